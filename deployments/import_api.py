"""Bulk import's handle API, a collaborator of the Ingress: many photos of many persons in one call.

Per call: photos already imported for their person (same external id, same photo bytes) are skipped before
any model runs; the others are detected concurrently (the Detector's replicas take them within their
concurrency) and embedded with the tenant's model (the Detector hands each photo's crops to its Embedder,
which batches them across photos), checked by the enrolment gate (tenancy.quality.enrolment_face), and stored
by the tenant's shard actor in one durable commit that also finds or creates the persons by external id
(tenancy/bulk_import.py). A photo that is refused (no_face,
multiple_faces, low_quality, invalid_image, image_too_large) is answered per item; a failed dependency fails
the whole call (503) and nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import hashlib

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.api_calls import api_errors
from deployments.face_pipeline import FacePipeline
from deployments.tenant_calls import TenantCalls
from securegate import errors
from securegate import schemas as s
from tenancy import operations as op
from tenancy.quality import enrolment_face


# Photos of import calls being detected at once per Ingress replica: one Detector replica's worth
# (max_ongoing_requests 4), so bulk work leaves the Detector's bounded queue (max_queued_requests) to the
# interactive searches. A photo that still finds the queue full waits and retries: a bulk job is better
# late than refused.
IMPORT_DETECTIONS = 4
OVERLOAD_RETRY_FOR_S = 60.0


class ImportApi:
    def __init__(self, pipeline: FacePipeline, tenants: DeploymentHandle, calls: TenantCalls) -> None:
        self.pipeline, self.tenants, self.calls = pipeline, tenants, calls
        self._slots = asyncio.Semaphore(IMPORT_DETECTIONS)

    @api_errors
    async def import_faces(self, api_key: str, items: list[dict]) -> dict:
        """`items`: [{external_id, image (bytes), metadata?}], at most schemas.IMPORT_MAX_ITEMS. Answers each item
        in order: enrolled (person_id, face_id, quality), skipped (already enrolled: person_id, face_id) or
        refused (error: code, message, reasons / faces)."""
        if not 1 <= len(items) <= s.IMPORT_MAX_ITEMS:
            raise errors.InvalidRequest(f"give 1 to {s.IMPORT_MAX_ITEMS} items per call, not {len(items)}")
        # The HTTP body's bounds on external ids and metadata, for handle callers too.
        persons = [s.PersonCreate(external_id=item["external_id"], metadata=item.get("metadata") or {}) for item in items]
        if any(p.external_id is None for p in persons):
            raise errors.InvalidRequest("every item needs an external_id")
        caller = op.ApiKeyCaller(api_key)
        digests = [hashlib.sha256(item["image"]).digest() for item in items]  # what a photo is known by (tenancy/bulk_import.py)
        found = await self.tenants.find_imported.remote(op.FindImported(caller, [(p.external_id, d) for p, d in zip(persons, digests)]))
        self.calls.answered(api_key, found)
        tenant = found.tenant
        if tenant.model not in await self.pipeline.served_models():
            raise errors.ModelMismatch(f"tenant is bound to model {tenant.model}; this deployment does not serve it")
        results: list[dict | None] = [{"status": "skipped", **f} if f else None for f in found.found]
        todo = [k for k, r in enumerate(results) if r is None]
        gated = await asyncio.gather(*(self._gated_face(items[k]["image"], tenant) for k in todo))
        accepted = []
        for k, outcome in zip(todo, gated):
            if isinstance(outcome, errors.ApiError):
                results[k] = {"status": "refused", "error": outcome.body()["error"]}
            else:
                accepted.append((k, *outcome))
        if accepted:
            keep = tenant.settings.keep_enrolment_photos  # the aligned crop is stored sealed with its face
            entries = [{"external_id": persons[k].external_id, "metadata": persons[k].metadata, "digest": digests[k],
                        "vector": face.vector, "det_score": face.score, "quality": report.score,
                        **({"crop": face.crop} if keep else {})}
                       for k, face, report in accepted]
            stored = await self.tenants.import_faces.remote(op.ImportFaces(caller, entries, tenant.model))
            for (k, _, _), result in zip(accepted, stored.results):
                result.pop("created_person", None)
                results[k] = result
        answered = [{"index": k, "external_id": persons[k].external_id, **r} for k, r in enumerate(results)]
        counts = {status: sum(r["status"] == status for r in answered) for status in ("enrolled", "skipped", "refused")}
        return {"items": answered, **counts}

    async def _gated_face(self, image: bytes, tenant):
        """(face, quality report) of a photo fit to enrol, embedded with the tenant's model, or the ApiError that
        refuses it. A failed dependency (5xx) is raised: the whole call fails rather than answer a photo as refused."""
        try:
            return enrolment_face(await self._detect_for_import(image, tenant.model), None, tenant.settings.quality)
        except Exception as exc:
            refusal = errors.to_api_error(exc)
            if refusal.status >= 500:
                raise refusal from None
            refusal.details.pop("field", None)
            return refusal

    async def _detect_for_import(self, image: bytes, model: str):
        deadline = asyncio.get_running_loop().time() + OVERLOAD_RETRY_FOR_S
        pause = 0.1
        async with self._slots:
            while True:
                try:
                    return await self.pipeline.faces(image, None, embed_with=model, crops=True)
                except Exception as exc:
                    # Checked by type: to_api_error here would log an unexpected error that _gated_face maps again.
                    cause = errors.root_cause(exc)
                    if not isinstance(cause, (BackPressureError, errors.Overloaded)) or asyncio.get_running_loop().time() > deadline:
                        raise
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)
