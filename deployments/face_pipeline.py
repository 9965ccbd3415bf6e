"""The face pipeline as the Ingress's collaborators use it: an image's header checked here, the image admitted by
the latency budget (deployments/admission.py), detected by the Detector (which hands the crops to the Embedder of
the model named), its faces back; and the model packs this application serves."""

from __future__ import annotations

import asyncio

from ray.serve.handle import DeploymentHandle

from deployments.admission import LatencyBudget
from securegate import errors
from vision import images
from vision.detector import DetectedFace


def model_id(model: dict) -> str:
    """What a tenant's vectors are bound to (same as ModelPack.model_id)."""
    return f"{model['name']}/{model['dim']}"


class FacePipeline:
    """`embedders`: every pack served, by name (settings `packs`; `embedder` is the default pack's): a tenant's
    crops go to the Embedder of the model it is bound to (after a model migration, not the default one)."""

    def __init__(self, detector: DeploymentHandle, embedder: DeploymentHandle, embedders: dict[str, DeploymentHandle] | None,
                 max_image_pixels: int, latency_budget_s: float) -> None:
        self.detector, self.embedder = detector, embedder
        self.embedders = dict(embedders or {})
        self.max_image_pixels = max_image_pixels
        self.admission = LatencyBudget(latency_budget_s)  # the images this replica sends
        self._model: dict | None = None
        self._served: dict[str, tuple[DeploymentHandle, dict]] | None = None

    async def model_info(self) -> dict:
        """The default pack's model: what new tenants are bound to."""
        if self._model is None:
            self._model = await self.embedder.info.remote()
        return self._model

    async def served_models(self) -> dict[str, tuple[DeploymentHandle, dict]]:
        """{model id: (Embedder handle, its info)} of every pack this application serves."""
        if self._served is None:
            handles = list(self.embedders.values()) or [self.embedder]
            infos = await asyncio.gather(*(h.info.remote() for h in handles))
            self._served = {model_id(info): (handle, info) for handle, info in zip(handles, infos)}
        return self._served

    async def packs(self) -> tuple[str, set[str]]:
        """(the model id new tenants are bound to, the model ids served): what TenantModels asks once."""
        return model_id(await self.model_info()), set(await self.served_models())

    async def infos(self) -> tuple[dict, dict]:
        """The Detector's and the default Embedder's info, asked now (readiness)."""
        return await asyncio.gather(self.detector.info.remote(), self.embedder.info.remote())

    async def faces(self, image: bytes, max_faces: int | None, field: str = "image", *, embed_with: str | None = None,
                    largest: bool = False, crops: bool = False) -> list[DetectedFace]:
        """The image's faces from the Detector, embedded with model `embed_with` (it hands the crops to that
        model's Embedder itself); the largest only with `largest`; with their aligned crops with `crops`."""
        # The header check runs here, before the bytes travel to a detector replica.
        try:
            images.probe(image, self.max_image_pixels)
        except errors.ApiError as exc:
            exc.details.setdefault("field", field)
            raise
        self.admission.admit()  # 503 overloaded when its expected wait would pass the latency budget
        try:
            faces = await self.detector.detect.remote(image, max_faces, embed_with=embed_with, largest=largest, crops=crops)
        finally:
            self.admission.done()
        if not faces:
            raise errors.NoFace(f"no face found in {field}", field=field)
        return faces
