"""Detector deployment: image bytes → faces (bbox, 5 landmarks, score) and aligned crops, and, asked for a model,
their vectors: the Detector hands the crops to that model's Embedder itself, so an image's crops never travel
back through the Ingress (docs/performance.md measures this against passing the Detector's response on).
Which images reach it at all is the Ingress's admission (deployments/admission.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import numpy as np

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from securegate import errors, metrics
from vision import images
from vision.detector import DetectedFace, FaceDetector
from vision.packs import resolve_pack
from vision.runtime import onnx_providers
from securegate.settings import Settings

log = logging.getLogger("ray.serve")


# A small queue per replica: the rest wait at their caller's Serve router, which hands each to whichever replica
# frees a slot first. max_ongoing_requests also counts images whose crops are with the Embedder. Serve's caller
# queue limit (max_queued_requests) is a backstop behind the Ingress's latency budget, answered 503 too.
# No access log, as the Embedder: its callers are the Ingress (which logs every client request) and the camera
# workers, one line per frame; py-spy had Serve's access logging at ~8 % of the replica's Python time.
@serve.deployment(max_ongoing_requests=4, max_queued_requests=64, ray_actor_options={"num_cpus": 0.5},
                  logging_config={"enable_access_log": False})
class Detector:
    def __init__(self, settings: dict, embedders: dict[str, DeploymentHandle] | None = None) -> None:
        """`embedders`: {pack name: Embedder handle} of the packs served; a caller names the model to embed with."""
        self.settings = Settings.model_validate(settings)
        cfg = self.settings.detector
        self.pack = resolve_pack(self.settings.models)
        self.model = FaceDetector(
            self.pack,
            onnx_providers(use_gpu=bool(ray.get_gpu_ids())),
            det_size=cfg.det_size,
            det_thresh=cfg.det_thresh,
            threads=cfg.threads,
            fit_aspect=cfg.fit_aspect,
        )
        # Camera frames get their own (smaller) input square: faces at a door are large in a 640x360 frame,
        # and a smaller square is what lets one CPU hold several cameras (benchmarks/streams.py).
        self.frame_model = FaceDetector(self.pack, self.model.providers, det_size=self.settings.streams.det_size,
                                        det_thresh=cfg.det_thresh, threads=self.settings.streams.det_threads,
                                        fit_aspect=cfg.fit_aspect)
        # A lone image gets a session with more threads (settings.detector.idle_threads); on a GPU the device
        # does the work and one session is enough.
        self.idle_model = self.model
        if cfg.idle_threads and cfg.idle_threads != cfg.threads and "CUDAExecutionProvider" not in self.model.providers:
            self.idle_model = FaceDetector(self.pack, self.model.providers, det_size=cfg.det_size,
                                           det_thresh=cfg.det_thresh, threads=cfg.idle_threads, fit_aspect=cfg.fit_aspect)
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._detecting = 0  # images inside detect(): running or waiting for a slot
        self.embedders = dict(embedders or {})
        self._by_model: dict[str, DeploymentHandle] | None = None  # {model id: Embedder handle}
        log.info("Detector ready: %s on %s (GPUs %s)", self.pack.detector_path.name, self.model.providers, ray.get_gpu_ids())

    def reconfigure(self, user_config: dict) -> None:
        if "det_thresh" in user_config:
            for model in {id(m): m for m in (self.model, self.idle_model, self.frame_model)}.values():
                model.set_threshold(float(user_config["det_thresh"]))

    async def detect(self, image: bytes, max_faces: int | None = None, *, embed_with: str | None = None,
                     largest: bool = False, crops: bool = False) -> list[DetectedFace]:
        """Faces largest-first after SCRFD's own ranking; at most `max_faces` (the configured limit); only the
        largest with `largest`. `embed_with` (a model id): each face's `vector` from that model's Embedder. Their
        aligned crops come back only with `crops` (the enrolment gates measure them; a tenant may keep them).
        At most `detector.concurrency` images are decoded and detected at once; the rest wait their turn here."""
        self._detecting += 1
        try:
            async with self._slots:
                model = self.idle_model if self._detecting == 1 else self.model
                faces = await asyncio.to_thread(self._detect, model, image, max_faces)
        finally:
            self._detecting -= 1
        if largest and faces:
            faces = [max(faces, key=lambda f: f.area)]
        if embed_with is not None and faces:
            vectors = await (await self._embedder(embed_with)).embed.remote(np.stack([f.crop for f in faces]))
            faces = [dataclasses.replace(f, vector=v) for f, v in zip(faces, vectors)]
        return faces if crops else [dataclasses.replace(f, crop=None) for f in faces]

    async def _embedder(self, model: str) -> DeploymentHandle:
        if self._by_model is None:
            infos = await asyncio.gather(*(h.info.remote() for h in self.embedders.values()))
            self._by_model = {i["model_id"]: h for i, h in zip(infos, self.embedders.values())}
        if model not in self._by_model:
            raise errors.ModelMismatch(f"model {model} is not served here; served: {', '.join(sorted(self._by_model))}")
        return self._by_model[model]

    def _detect(self, model: FaceDetector, image: bytes, max_faces: int | None) -> list[DetectedFace]:
        pixels = images.decode(image, self.settings.limits.max_image_pixels)
        limit = min(max_faces or self.settings.limits.max_faces, self.settings.limits.max_faces)
        faces = model.detect(pixels, max_faces=limit)
        if faces:  # Ray counters refuse increments of 0
            metrics.faces_detected_total().inc(len(faces))
        return faces

    async def detect_frame(self, frame: np.ndarray, max_faces: int | None = None, *, crops: bool = True) -> list[DetectedFace]:
        """A decoded camera frame (BGR) → faces. Frames from all cameras are gathered into one batch per
        replica call (SCRFD through insightface runs one image at a time, so the batch saves the per-request
        hops and keeps one inference thread busy, not a batched tensor). `crops=False`: boxes and landmarks
        only, for a worker that sent its frame shrunk to `frame_input()` and aligns from its full frame."""
        return await self._detect_frames((frame, max_faces, crops))

    def frame_input(self) -> dict:
        """What a worker shrinks its frames to (`side`: settings streams.det_size) and aligns crops at."""
        return {"side": self.frame_model.det_size, "crop_size": self.pack.recognizer_input_size}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _detect_frames(self, items: list[tuple[np.ndarray, int | None, bool]]) -> list[list[DetectedFace]]:
        limit = self.settings.limits.max_faces

        def run() -> list[list[DetectedFace]]:
            return [self.frame_model.detect(frame, max_faces=min(n or limit, limit), crops=crops)
                    for frame, n, crops in items]

        faces = await asyncio.to_thread(run)
        total = sum(len(f) for f in faces)
        if total:
            metrics.faces_detected_total().inc(total)
        return faces

    def info(self) -> dict:
        return {"model": self.pack.detector_path.name, "providers": self.model.providers, "gpu_ids": ray.get_gpu_ids()}
