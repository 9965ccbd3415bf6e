"""Detector deployment: image bytes → faces (bbox, 5 landmarks, score) and aligned crops."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

import ray
from ray import serve

from securegate import metrics

from vision import images
from vision.detector import DetectedFace, FaceDetector
from vision.packs import resolve_pack
from vision.runtime import onnx_providers
from securegate.settings import Settings

log = logging.getLogger("ray.serve")


# A bounded queue (max_queued_requests, per caller): past capacity a caller gets 503 `overloaded` at once
# (securegate.errors maps Serve's BackPressureError) instead of waiting seconds; configs/local.yaml explains.
@serve.deployment(max_ongoing_requests=4, max_queued_requests=4, ray_actor_options={"num_cpus": 0.5})
class Detector:
    def __init__(self, settings: dict) -> None:
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
        log.info("Detector ready: %s on %s (GPUs %s)", self.pack.detector_path.name, self.model.providers, ray.get_gpu_ids())

    def reconfigure(self, user_config: dict) -> None:
        if "det_thresh" in user_config:
            for model in {id(m): m for m in (self.model, self.idle_model, self.frame_model)}.values():
                model.set_threshold(float(user_config["det_thresh"]))

    async def detect(self, image: bytes, max_faces: int | None = None) -> list[DetectedFace]:
        """Faces largest-first after SCRFD's own ranking; at most `max_faces` (the configured limit). At most
        `detector.concurrency` images are decoded and detected at once; the rest wait their turn here."""
        self._detecting += 1
        try:
            async with self._slots:
                model = self.idle_model if self._detecting == 1 else self.model
                return await asyncio.to_thread(self._detect, model, image, max_faces)
        finally:
            self._detecting -= 1

    def _detect(self, model: FaceDetector, image: bytes, max_faces: int | None) -> list[DetectedFace]:
        pixels = images.decode(image, self.settings.limits.max_image_pixels)
        limit = min(max_faces or self.settings.limits.max_faces, self.settings.limits.max_faces)
        faces = model.detect(pixels, max_faces=limit)
        if faces:  # Ray counters refuse increments of 0
            metrics.faces_detected_total().inc(len(faces))
        return faces

    async def detect_frame(self, frame: np.ndarray, max_faces: int | None = None) -> list[DetectedFace]:
        """A decoded camera frame (BGR) → faces. Frames from all cameras are gathered into one batch per
        replica call (SCRFD through insightface runs one image at a time, so the batch saves the per-request
        hops and keeps one inference thread busy, not a batched tensor)."""
        return await self._detect_frames((frame, max_faces))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _detect_frames(self, items: list[tuple[np.ndarray, int | None]]) -> list[list[DetectedFace]]:
        limit = self.settings.limits.max_faces

        def run() -> list[list[DetectedFace]]:
            return [self.frame_model.detect(frame, max_faces=min(n or limit, limit)) for frame, n in items]

        faces = await asyncio.to_thread(run)
        total = sum(len(f) for f in faces)
        if total:
            metrics.faces_detected_total().inc(total)
        return faces

    def info(self) -> dict:
        return {"model": self.pack.detector_path.name, "providers": self.model.providers, "gpu_ids": ray.get_gpu_ids()}
