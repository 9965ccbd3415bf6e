"""Detector deployment: image bytes → faces (bbox, 5 landmarks, score) and aligned crops."""

from __future__ import annotations

import logging

import ray
from ray import serve

from securegate import images, metrics
from securegate.models import DetectedFace, FaceDetector, onnx_providers, resolve_pack
from securegate.settings import Settings

log = logging.getLogger("ray.serve")


@serve.deployment(max_ongoing_requests=4, ray_actor_options={"num_cpus": 0.5})
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
        )
        log.info("Detector ready: %s on %s (GPUs %s)", self.pack.detector_path.name, self.model.providers, ray.get_gpu_ids())

    def reconfigure(self, user_config: dict) -> None:
        if "det_thresh" in user_config:
            self.model.set_threshold(float(user_config["det_thresh"]))

    def detect(self, image: bytes, max_faces: int | None = None) -> list[DetectedFace]:
        """Faces largest-first after SCRFD's own ranking; at most `max_faces` (the configured limit)."""
        pixels = images.decode(image, self.settings.limits.max_image_pixels)
        limit = min(max_faces or self.settings.limits.max_faces, self.settings.limits.max_faces)
        faces = self.model.detect(pixels, max_faces=limit)
        if faces:  # Ray counters refuse increments of 0
            metrics.faces_detected_total().inc(len(faces))
        return faces

    def info(self) -> dict:
        return {"model": self.pack.detector_path.name, "providers": self.model.providers, "gpu_ids": ray.get_gpu_ids()}
