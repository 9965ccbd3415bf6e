"""TenantGallery: the TenantSupervisor's operations on a tenant's gallery, one typed method per operation
(tenancy/operations.py). Each is one TenantSupervisor call: the caller is authenticated (and charged its rate-limit cost)
here, vectors are checked against the model the tenant is bound to, and ONE call on the tenant's primary index
actor does the work: a write chains its audit entry in its own transaction, a read appends its audit entry in
the same call (tenancy/reads.py), sharded or not.

Reads are retried while Ray restarts a crashed actor (it reactivates from the file), for up to READ_RETRY_S;
writes never are: their caller got no acknowledgement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from ray.exceptions import RayActorError

from securegate import errors
from tenancy import operations as op
from tenancy.migration import ModelSwitched, VectorsOfAnotherModel
from tenancy.quality import assess
from tenancy.ratelimit import RateLimiter
from tenancy.service import TenantUnavailable
from tenancy.tenant import Tenant, match_threshold

READ_RETRY_S = 15.0


class TenantGallery:
    """`service`: the TenantService (its registry, the tenants' actors, migrations and audit files);
    `model_threshold(model id)`: the default threshold of a served model; `verify_threshold`: the deployment's."""

    def __init__(self, service, rate_limiter: RateLimiter, model_threshold: Callable[[str], Awaitable[float]],
                 verify_threshold: float | None = None) -> None:
        self.service, self.rate_limiter = service, rate_limiter
        self.model_threshold, self.verify_threshold = model_threshold, verify_threshold

    # ---- who asks, and for which tenant ----------------------------------------------------------------------
    def admit(self, request) -> tuple[Tenant, str]:
        """(the tenant, the audit's principal) of the request's caller: an API key is authenticated and charged
        the request's rate-limit cost; an internal caller names its tenant."""
        caller = request.caller
        if isinstance(caller, op.ApiKeyCaller):
            tenant = self.service.registry.authenticate(caller.api_key)
            cost = getattr(request, "rate_cost", 1.0)
            if cost:
                settings = tenant.settings
                self.rate_limiter.take(tenant.tenant_id, settings.rate_limit_per_s, settings.rate_limit_burst, cost)
            return tenant, caller.principal
        if isinstance(caller, op.InternalCaller):
            return self.service.registry.get(caller.tenant_id), caller.principal
        raise TypeError(f"not a caller: {type(caller).__name__}")

    def _bound(self, tenant: Tenant, model: str, vectors: np.ndarray) -> int:
        """The tenant's model-switch epoch, once the vectors are known to be of the model it is bound to. A switch
        in flight refuses them (503, retry: tenancy/migration.py); vectors of another model are refused with the
        tenant's model, so the Ingress can embed again with it."""
        if tenant.tenant_id in self.service.migrations.switching:
            raise ModelSwitched(f"tenant {tenant.tenant_id} is switching to another model; retry")
        if model != tenant.model or np.asarray(vectors).shape[-1] != tenant.dim:
            raise VectorsOfAnotherModel(f"tenant {tenant.tenant_id} is bound to {tenant.model}; these vectors are of "
                                        f"{model}", tenant_model=tenant.model)
        return self.service.migrations.epochs.get(tenant.tenant_id, 0)

    def _unswitched(self, tenant: Tenant, epoch: int, what: str) -> None:
        """A read that spanned a model switch compared old-model vectors with new ones: refused (retry)."""
        if self.service.migrations.epochs.get(tenant.tenant_id, 0) != epoch:
            raise ModelSwitched(f"tenant {tenant.tenant_id} switched to another model during {what}; retry")

    async def threshold(self, requested: float | None, tenant: Tenant) -> float:
        """The request's, else the tenant's, else the deployment's, else the default of the tenant's model."""
        return await match_threshold(requested, tenant.settings, self.verify_threshold, lambda: self.model_threshold(tenant.model))

    async def _primary(self, tenant: Tenant, call: Callable[[Any], Awaitable], *, read: bool, what: str):
        """`call(primary actor)`, retried while Ray restarts the actor when it is a read. A primary that Ray cannot
        place again (its node lost, no room elsewhere) gets ShardsUnplaced (503) after tenancy.restart_wait_s, the
        call cancelled if it never started (tenancy/placement.py); the primary bounds its own wait on the others."""
        deadline = time.monotonic() + READ_RETRY_S
        while True:
            shard_set = await self.service.shard_set(tenant)
            try:
                ref = call(shard_set.primary)
                return await self.service.watch.result(tenant.tenant_id, ref, [shard_set.primary], what, cancel=[ref])
            except RayActorError as exc:
                if not read or time.monotonic() > deadline:
                    raise TenantUnavailable(f"tenant index restarted during {what}; retry") from exc
                await asyncio.sleep(0.2)

    # ---- reads that reveal faces (audited by the actor in the same call) ------------------------------------------
    async def search(self, request: op.Search) -> op.SearchAnswer:
        tenant, principal = self.admit(request)
        vectors = np.asarray(request.vectors, np.float32)
        epoch = self._bound(tenant, request.model, vectors)
        threshold = await self.threshold(request.threshold, tenant)
        match_on = tenant.settings.match_on
        faces = await self._primary(tenant, lambda actor: actor.search.remote(
            vectors, request.top_k, threshold, match_on, principal=principal), read=True, what="search")
        self._unswitched(tenant, epoch, "search")
        return op.SearchAnswer(tenant.tenant_id, tenant.model, faces, threshold)

    async def verify_person(self, request: op.VerifyPerson) -> op.Verification:
        tenant, principal = self.admit(request)
        vector = np.asarray(request.vector, np.float32)
        epoch = self._bound(tenant, request.model, vector)
        scores = await self._primary(tenant, lambda actor: actor.verify_person.remote(
            vector, request.person_id, principal=principal), read=True, what="verify")
        self._unswitched(tenant, epoch, "verify")
        if scores["faces"] == 0:
            raise errors.NotFound(f"person {request.person_id} has no enrolled faces")
        threshold = await self.threshold(request.threshold, tenant)
        key = "centroid_similarity" if tenant.settings.match_on == "centroid" else "best_face_similarity"
        similarity = scores[key]
        # The search's rule: a probe at least as close to one of the person's rejections does not match them.
        rejection = scores["best_rejection_similarity"]
        rejected = rejection is not None and similarity <= rejection
        return op.Verification(
            tenant.tenant_id, tenant.model, round(similarity, 6), similarity >= threshold and not rejected, threshold,
            round(scores["best_face_similarity"], 6), round(scores["centroid_similarity"], 6),
            None if rejection is None else round(rejection, 6), rejected)

    # ---- persons ----------------------------------------------------------------------------------------------------
    async def create_person(self, request: op.CreatePerson) -> op.PersonCreated:
        tenant, principal = self.admit(request)
        created = await self._primary(tenant, lambda actor: actor.create_person.remote(
            request.external_id, request.metadata, principal=principal), read=False, what="create_person")
        return op.PersonCreated(tenant.tenant_id, tenant.model, created["person_id"])

    async def get_person(self, request: op.GetPerson) -> op.PersonView:
        tenant, _ = self.admit(request)
        person = await self._primary(tenant, lambda actor: actor.get_person.remote(request.person_id),
                                     read=True, what="get_person")
        faces = [op.FaceView(**face) for face in person.pop("faces")]
        return op.PersonView(tenant.tenant_id, tenant.model, faces=faces, **person)

    async def list_persons(self, request: op.ListPersons) -> op.PersonPage:
        tenant, _ = self.admit(request)
        page = await self._primary(tenant, lambda actor: actor.list_persons.remote(request.limit, request.cursor),
                                   read=True, what="list_persons")
        return op.PersonPage(tenant.tenant_id, tenant.model, [op.PersonSummary(**p) for p in page["persons"]],
                             page["next_cursor"])

    async def find_person(self, request: op.FindPerson) -> op.PersonPage:
        tenant, _ = self.admit(request)
        page = await self._primary(tenant, lambda actor: actor.find_person.remote(request.external_id),
                                   read=True, what="find_person")
        return op.PersonPage(tenant.tenant_id, tenant.model, [op.PersonSummary(**p) for p in page["persons"]],
                             page["next_cursor"])

    async def create_person_with_faces(self, request: op.CreatePersonWithFaces) -> op.PersonWithFacesCreated:
        tenant, principal = self.admit(request)
        vectors = np.asarray(request.vectors, np.float32)
        self._bound(tenant, request.model, vectors)
        made = await self._primary(tenant, lambda actor: actor.create_person_with_faces.remote(
            request.person_id, request.external_id, request.metadata, vectors, principal=principal),
            read=False, what="create_person_with_faces")
        return op.PersonWithFacesCreated(tenant.tenant_id, tenant.model, **made)

    async def delete_person(self, request: op.DeletePerson) -> op.Done:
        tenant, principal = self.admit(request)
        await self._primary(tenant, lambda actor: actor.delete_person.remote(request.person_id, principal=principal),
                            read=False, what="delete_person")
        return op.Done(tenant.tenant_id, tenant.model)

    # ---- faces ------------------------------------------------------------------------------------------------------
    async def enrol_face(self, request: op.EnrolFace) -> op.FaceEnrolled:
        """The tenant's quality gates, then the face stored (its crop too, sealed, if the tenant keeps them)."""
        tenant, principal = self.admit(request)
        face = request.face
        self._bound(tenant, request.model, face.vector)
        report = assess(face.bbox, face.landmarks, face.crop, face.score, tenant.settings.quality)
        if not report.passed:
            raise errors.LowQuality("the face is not good enough to enrol", reasons=report.reasons)
        crop = face.crop if tenant.settings.keep_enrolment_photos else None
        added = await self._primary(tenant, lambda actor: actor.add_face.remote(
            request.person_id, face.vector, face.score, report.score, crop, principal=principal),
            read=False, what="add_face")
        return op.FaceEnrolled(tenant.tenant_id, tenant.model, added["face_id"], added["quality"])

    async def add_samples(self, request: op.AddSamples) -> op.FacesAdded:
        tenant, principal = self.admit(request)
        vectors = np.asarray(request.vectors, np.float32).reshape(len(request.vectors), -1)
        self._bound(tenant, request.model, vectors)
        face_ids = []
        for vector in vectors:  # camera samples passed the quality gates when they were embedded; no scores kept
            added = await self._primary(tenant, lambda actor: actor.add_face.remote(
                request.person_id, vector, 0.0, 0.0, principal=principal), read=False, what="add_face")
            face_ids.append(added["face_id"])
        return op.FacesAdded(tenant.tenant_id, tenant.model, face_ids)

    async def delete_face(self, request: op.DeleteFace) -> op.Done:
        tenant, principal = self.admit(request)
        await self._primary(tenant, lambda actor: actor.delete_face.remote(
            request.person_id, request.face_id, principal=principal), read=False, what="delete_face")
        return op.Done(tenant.tenant_id, tenant.model)

    # ---- corrections ------------------------------------------------------------------------------------------------
    async def add_rejections(self, request: op.AddRejections) -> op.RejectionsAdded:
        tenant, principal = self.admit(request)
        self._bound(tenant, request.model, request.vectors)
        added = await self._primary(tenant, lambda actor: actor.add_rejections.remote(
            request.person_id, request.vectors, request.source, principal=principal), read=False, what="add_rejections")
        return op.RejectionsAdded(tenant.tenant_id, tenant.model, added["person_id"], added["rejection_ids"])

    async def reject_face(self, request: op.RejectFace) -> op.RejectionsAdded:
        tenant, principal = self.admit(request)
        added = await self._primary(tenant, lambda actor: actor.reject_face.remote(
            request.person_id, request.face_id, principal=principal), read=False, what="reject_face")
        return op.RejectionsAdded(tenant.tenant_id, tenant.model, added["person_id"], added["rejection_ids"])

    async def list_rejections(self, request: op.ListRejections) -> op.RejectionList:
        tenant, _ = self.admit(request)
        found = await self._primary(tenant, lambda actor: actor.list_rejections.remote(request.person_id),
                                    read=True, what="list_rejections")
        return op.RejectionList(tenant.tenant_id, tenant.model, found["person_id"], found["rejections"])

    async def delete_rejection(self, request: op.DeleteRejection) -> op.Done:
        tenant, principal = self.admit(request)
        await self._primary(tenant, lambda actor: actor.delete_rejection.remote(
            request.person_id, request.rejection_id, principal=principal), read=False, what="delete_rejection")
        return op.Done(tenant.tenant_id, tenant.model)

    async def merge_persons(self, request: op.MergePersons) -> op.PersonsMerged:
        tenant, principal = self.admit(request)
        merged = await self._primary(tenant, lambda actor: actor.merge_persons.remote(
            request.person_id, request.merged_person_id, principal=principal), read=False, what="merge_persons")
        return op.PersonsMerged(tenant.tenant_id, tenant.model, **merged)

    async def move_face(self, request: op.MoveFace) -> op.FaceMoved:
        tenant, principal = self.admit(request)
        moved = await self._primary(tenant, lambda actor: actor.move_face.remote(
            request.person_id, request.face_id, request.to_person_id, principal=principal), read=False, what="move_face")
        return op.FaceMoved(tenant.tenant_id, tenant.model, moved["face_id"], moved["person_id"])

    # ---- bulk import (tenancy/bulk_import.py) ---------------------------------------------------------------------
    async def find_imported(self, request: op.FindImported) -> op.ImportedFound:
        tenant, _ = self.admit(request)
        found = await self._primary(tenant, lambda actor: actor.imported_photos.remote(request.photos),
                                    read=True, what="imported_photos")
        return op.ImportedFound(tenant.tenant_id, tenant.model, tenant, found)

    async def import_faces(self, request: op.ImportFaces) -> op.FacesImported:
        tenant, principal = self.admit(request)
        for item in request.items:
            self._bound(tenant, request.model, item["vector"])
        results = await self._primary(tenant, lambda actor: actor.import_faces.remote(request.items, principal=principal),
                                      read=False, what="import_faces")
        return op.FacesImported(tenant.tenant_id, tenant.model, results)

    # ---- the tenant's audit (read from its file: neither activates the tenant) ---------------------------------------
    async def audit_events(self, request: op.AuditEvents) -> op.AuditPage:
        tenant, _ = self.admit(request)
        return op.AuditPage(tenant.tenant_id, tenant.model,
                            self.service.audit_events(tenant.tenant_id, request.since, request.limit))

    async def verify_audit(self, request: op.VerifyAudit) -> op.AuditVerification:
        tenant, _ = self.admit(request)
        return op.AuditVerification(tenant.tenant_id, tenant.model, await self.service.verify_tenant_audit(tenant.tenant_id))

    # ---- operators and tests ----------------------------------------------------------------------------------------
    async def info(self, tenant_id: str) -> dict:
        """The tenant's index: faces, memory, tier, layout (summed over its shards); activates it."""
        tenant = self.service.registry.get(tenant_id)
        return await self._primary(tenant, lambda actor: actor.tenant_info.remote(), read=True, what="info")
