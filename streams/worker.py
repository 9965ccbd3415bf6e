"""One Ray actor per camera: frames in, sightings out.

    reader thread (PyAV) ─► FrameQueue (bounded, drops oldest) ─► detect (Detector, batched across cameras)
        ─► ByteTrack ─► embed the tracks' faces (Embedder) ─► search the faces and each track's template
        (TenantSupervisor) ─► decide per track (streams/tracking.py) ─► StreamSupervisor.record_sighting (cooldown, encrypted event log, SSE, webhooks)

Pushed frames (`POST /v1/streams/{id}/frames`) enter the same queue. The actor is detached and named
`stream:<tenant>:<stream>` in the `securegate` namespace; Ray restarts it after a crash (max_restarts=-1)
and it resumes: it asks the StreamSupervisor for its stream's configuration (the URL is decrypted there and
never stored in the actor's creation arguments) and reconnects. Frames are never stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import time
from collections.abc import Iterable

import numpy as np
import ray

from securegate import errors
from streams.sources import Frame, FrameQueue, StreamReader, redact_url
from streams.tracking import FaceTracks, Policy, Track
from tenancy.operations import InternalCaller, Search
from vision import images
from vision.detector import enlarged, shrunk

log = logging.getLogger(__name__)

NAMESPACE = "securegate"


def worker_name(tenant_id: str, stream_id: str) -> str:
    return f"stream:{tenant_id}:{stream_id}"


def describe(exc: BaseException) -> str:
    """A camera's `last_error`: the failure's type and own words, never Ray's task header or traceback (process
    ids, addresses, code paths), which a remote call's error text starts with."""
    cause = errors.root_cause(exc)
    return f"{type(cause).__name__}: {errors.public_message(str(cause))}"[:500]


class StreamWorker:
    def __init__(self, tenant_id: str, stream_id: str, supervisor, detector, embedder, tenants, queue_frames: int = 2) -> None:
        self.tenant_id, self.stream_id = tenant_id, stream_id
        self.supervisor, self.detector, self.embedder, self.tenants = supervisor, detector, embedder, tenants
        self.queue = FrameQueue(queue_frames)
        self.reader: StreamReader | None = None
        self.config: dict | None = None
        self.tracks: FaceTracks | None = None
        self.frames_processed = 0
        self.pushed = 0
        self.lag_s: float | None = None
        self.state = "starting"
        self.last_error: str | None = None
        self.events = 0
        self._closing = 0  # ended tracks whose events are still being written: still counted in tracks_active
        self._push_origin: float | None = None
        self._last_frame: tuple[float, float] | None = None  # (wall, offset) of the last processed frame
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._frame_input: dict | None = None  # the Detector's frame side and crop size, asked once
        # Aligning crops here imports insightface (~1 s, several on a loaded host): in the constructor, which Ray
        # runs before any call, so neither a live camera's first frames nor a push client's are dropped for it
        # (a pushed frame waits for the worker instead of overflowing its queue while the loop is not yet running).
        importlib.import_module("insightface.utils.face_align")

    # ---- control ----------------------------------------------------------------------------------------
    async def start(self) -> dict:
        """Idempotent: the StreamSupervisor calls it after creating (or finding) the actor."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await self.status()

    async def ping(self) -> bool:
        if self._task is None:  # restarted by Ray: nobody called start() in this incarnation
            await self.start()
        return True

    async def stop(self) -> None:
        self._stopping = True
        if self.reader is not None:
            await asyncio.to_thread(self.reader.stop)
        self.queue.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (asyncio.TimeoutError, Exception):
                self._task.cancel()

    async def reconfigure(self, config: dict) -> None:
        """fps/cooldown/url changes: restart the reader with the new configuration."""
        if self.reader is not None:
            await asyncio.to_thread(self.reader.stop)
            self.reader = None
        self.queue = FrameQueue(self.queue.capacity)
        self._apply(config)

    async def push_frame(self, data: bytes, captured_at: float | None, max_pixels: int) -> dict:
        """A pushed frame, already through the Ingress's image gate; decoded here by the photo endpoints' decoder
        (which checks the header again), queued like a read one (dropped when the queue is full). A body whose
        header passed but whose data does not decode raises InvalidImage, our own error, never a decoder's."""
        if self._task is None:
            await self.start()
        image = await asyncio.to_thread(images.decode, data, max_pixels)
        captured_at = time.time() if captured_at is None else float(captured_at)
        if self._push_origin is None:
            self._push_origin = captured_at
        self.pushed += 1
        dropped_before = self.queue.dropped
        self.queue.put(Frame(image, captured_at, captured_at - self._push_origin))
        return {"queued": True, "dropped": self.queue.dropped - dropped_before}

    async def status(self) -> dict:
        reader = self.reader.status() if self.reader is not None else {}
        state = reader.get("state", self.state) if self.state == "running" else self.state
        return {"state": state,
                "frames_read": reader.get("frames_read", 0) + self.pushed,
                "frames_processed": self.frames_processed,
                "frames_dropped": self.queue.dropped,
                "lag_s": None if self.lag_s is None else round(self.lag_s, 4),
                "reconnects": reader.get("reconnects", 0),
                "last_error": reader.get("last_error") or self.last_error,
                # 0 once every ended track's event is written: a client that waits for it reads them all.
                "tracks_active": (len(self.tracks.tracks) if self.tracks else 0) + self._closing,
                "events": self.events}

    async def replay(self, config: dict, frames: Iterable[Frame]) -> None:
        """Frames in hand (no reader, no queue) through the camera loop's steps, then every track closed: how
        benchmarks/degraded_ablation.py runs recorded clips through the real tracking and reporting."""
        self._apply(config)
        for frame in frames:
            await self._process(frame)
        await self._finish(self.tracks.close_all())

    # ---- the loop ---------------------------------------------------------------------------------------
    def _apply(self, config: dict) -> None:
        self.config = config
        self.tracks = FaceTracks(config["fps"], config["gates"], policy=config.get("policy", Policy()),
                                 lost_after_s=config.get("lost_after_s", 1.5))
        if config.get("url"):
            self.reader = StreamReader(config["url"], self.queue, config["fps"], loop=config.get("loop", False),
                                       realtime=config.get("realtime", True)).start()
        self.state = "running"

    async def _run(self) -> None:
        try:
            config = await self.supervisor.worker_config.remote(self.tenant_id, self.stream_id)
        except Exception as exc:
            self.state, self.last_error = "failed", describe(exc)
            log.exception("stream %s: no configuration", self.stream_id)
            return
        if config is None:  # the stream was deleted while we restarted
            self.state = "stopped"
            return
        self._apply(config)
        log.info("stream %s of %s: %s at %s fps", self.stream_id, self.tenant_id,
                 redact_url(config["url"]) if config.get("url") else "pushed frames", config["fps"])
        while not self._stopping:
            frame = await asyncio.to_thread(self.queue.get, 0.25)
            try:
                if frame is None:
                    await self._idle()
                    continue
                await self._process(frame)
            except Exception as exc:  # a failed dependency: keep the camera going, show the error
                # The error's own words, never Ray's task header or traceback (pids, addresses, code paths).
                self.last_error = describe(exc)
                log.warning("stream %s: frame failed: %s", self.stream_id, self.last_error)
                await asyncio.sleep(0.2)
        await self._finish(self.tracks.close_all())

    async def _idle(self) -> None:
        """No frame: end tracks by wall time (a camera that stopped, a push client that went away)."""
        if self._last_frame is not None and self.tracks.tracks:
            wall, offset = self._last_frame
            await self._finish(self.tracks.ended(offset + (time.time() - wall)))
        if self.reader is not None and self.reader.state == "ended" and not len(self.queue):
            await self._finish(self.tracks.close_all())

    async def _detect(self, image: np.ndarray) -> list:
        """The frame goes to the Detector at SCRFD's input size (a quarter of a 640x360 frame's bytes), which
        answers boxes and landmarks; the faces are aligned here from the full frame, as the Detector would."""
        if self._frame_input is None:
            self._frame_input = await self.detector.frame_input.remote()
        small, scale = shrunk(image, self._frame_input["side"])
        faces = await self.detector.detect_frame.remote(small, crops=False)
        return enlarged(faces, scale, image, self._frame_input["crop_size"]) if faces else []

    async def _process(self, frame: Frame) -> None:
        faces = await self._detect(frame.image)
        wanted = self.tracks.observe(faces, frame.captured_at, frame.offset_s)
        if wanted:
            vectors, norms = await self.embedder.embed_with_norms.remote(np.stack([w.crop for w in wanted]))
            templates = self.tracks.embedded(wanted, vectors, norms)
            # One search for the faces and the templates they changed.
            queries = np.vstack([vectors, *(t.template()[None] for t in templates)])
            caller = InternalCaller(self.tenant_id, f"stream:{self.stream_id}")
            answer = await self.tenants.search.remote(Search(caller, queries, self.config["tenant"].model, 1,
                                                             self.config["threshold"]))
            top = [dataclasses.asdict(matches[0]) if matches else None for matches in answer.faces]
            self.tracks.answered(wanted, top[:len(wanted)], templates, top[len(wanted):])
        for track in self.tracks.decided():
            await self._report(track)
        await self._finish(self.tracks.ended(frame.offset_s))
        self.frames_processed += 1
        self.lag_s = time.time() - frame.captured_at
        self._last_frame = (time.time(), frame.offset_s)

    async def _report(self, track: Track) -> None:
        kind, person_id, external_id = track.identity
        sighting = {"track_id": track.track_id, "first_seen": track.first_seen, "last_seen": track.last_seen,
                    "first_offset_s": round(track.first_offset_s, 3), "last_offset_s": round(track.last_offset_s, 3),
                    "track_length": track.frames, "best_similarity": track.best_similarity,
                    "votes": len(track.votes), "votes_for": track.votes_for, "decided_by": track.decided_by,
                    "decided_at": time.time(), **_best_frame(track)}
        if kind == "person":
            sighting.update(person_id=person_id, external_id=external_id)
        else:
            sighting["vector"] = track.unknown_vector()
        track.event = await self.supervisor.record_sighting.remote(self.tenant_id, self.stream_id, kind, sighting)
        track.reported = True
        self.events += 1

    async def _finish(self, ended: list[Track]) -> None:
        self._closing += len(ended)  # before the first await: status never sees them neither tracked nor written
        try:
            for track in ended:
                if track.identity is None:
                    continue
                if not track.reported:
                    await self._report(track)
                await self.supervisor.close_sighting.remote(self.tenant_id, self.stream_id, track.event, {
                    "last_seen": track.last_seen, "last_offset_s": round(track.last_offset_s, 3),
                    "track_length": track.frames, "best_similarity": track.best_similarity, **_best_frame(track)})
        finally:  # every one of them, also when a write failed part-way (the rest were not left counted)
            self._closing -= len(ended)


def _best_frame(track: Track) -> dict:
    """Where a thumbnail of the track comes from: its best face's frame (stream offset) and quality score."""
    return {"best_frame_offset_s": round(track.best_offset_s, 3), "best_frame_quality": round(track.best_score, 4)}


# Detached (outlives the StreamSupervisor replica that created it), restarted by Ray after a crash; calls in flight
# are not retried (a pushed frame that failed was never acknowledged).
StreamWorkerActor = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=64)(StreamWorker)
