"""Faces without a gallery (detect, embed, verify two images) and against a tenant's gallery (search, verify a
person): a collaborator of the Ingress, whose handle API and HTTP routes (deployments/routes/faces.py) call it."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
from ray.serve.handle import DeploymentHandle

from deployments.api_calls import api_errors
from deployments.face_pipeline import FacePipeline, model_id
from deployments.tenant_calls import TenantCalls
from tenancy import operations as op
from tenancy.tenant import match_threshold
from vision.detector import DetectedFace


class FaceApi:
    """`verify_threshold`: the operator's threshold for verifying two images (None: the model pack's default)."""

    def __init__(self, pipeline: FacePipeline, tenants: DeploymentHandle, calls: TenantCalls,
                 verify_threshold: float | None) -> None:
        self.pipeline, self.tenants, self.calls = pipeline, tenants, calls
        self.verify_threshold = verify_threshold

    @api_errors
    async def detect(self, image: bytes, max_faces: int | None = None) -> dict:
        faces = await self.pipeline.faces(image, max_faces)
        return {"faces": [f.summary() for f in faces]}

    @api_errors
    async def embed(self, image: bytes, max_faces: int | None = None) -> dict:
        model = await self.pipeline.model_info()
        faces = await self.pipeline.faces(image, max_faces, embed_with=model_id(model))
        return {
            "model": {"name": model["name"], "dim": model["dim"]},
            "faces": [{"bbox": f.summary()["bbox"], "score": f.summary()["score"], "embedding": f.vector.tolist()}
                      for f in faces],
        }

    @api_errors
    async def verify(self, image_a: bytes, image_b: bytes, threshold: float | None = None) -> dict:
        """Largest face of each image; cosine similarity against the threshold (default per model pack)."""
        model = await self.pipeline.model_info()
        embed_with = model_id(model)
        (a,), (b,) = await asyncio.gather(self.pipeline.faces(image_a, None, "image_a", embed_with=embed_with, largest=True),
                                          self.pipeline.faces(image_b, None, "image_b", embed_with=embed_with, largest=True))
        async def model_default() -> float:
            return float(model["default_threshold"])

        threshold = await match_threshold(threshold, None, self.verify_threshold, model_default)
        similarity = float(np.dot(a.vector, b.vector))
        return {"similarity": round(similarity, 6), "match": similarity >= threshold, "threshold": threshold}

    @api_errors
    async def search(self, api_key: str, image: bytes, threshold: float | None = None, top_k: int = 1,
                     max_faces: int | None = None) -> dict:
        """Every face in the image, searched in one batched call against the tenant's gallery."""
        async def attempt(model: str) -> tuple[list[DetectedFace], op.SearchAnswer]:
            faces = await self.pipeline.faces(image, max_faces, embed_with=model)
            vectors = np.stack([f.vector for f in faces])
            return faces, await self.tenants.search.remote(op.Search(op.ApiKeyCaller(api_key), vectors, model, top_k, threshold))

        faces, answer = await self.calls.run(api_key, attempt)
        self.calls.answered(api_key, answer)
        return {"faces": [{"bbox": f.summary()["bbox"], "score": f.summary()["score"],
                           "matches": [dataclasses.asdict(m) for m in matches]} for f, matches in zip(faces, answer.faces)],
                "threshold": answer.threshold}

    @api_errors
    async def verify_person(self, api_key: str, image: bytes, person_id: str, threshold: float | None = None) -> dict:
        """The image's largest face against an enrolled person: their faces, or their centroid (tenant setting)."""
        async def attempt(model: str) -> op.Verification:
            (face,) = await self.pipeline.faces(image, None, embed_with=model, largest=True)
            return await self.tenants.verify_person.remote(op.VerifyPerson(op.ApiKeyCaller(api_key), face.vector, model,
                                                                          person_id, threshold))

        return self.calls.answered(api_key, await self.calls.run(api_key, attempt))
