"""A tenant's persons, their enrolled faces, and the corrections ("not this person", merge, move): a collaborator
of the Ingress, whose handle API and HTTP routes (deployments/routes/persons.py) call it. One TenantSupervisor call
each, which authenticates the key (tenancy/operations.py)."""

from __future__ import annotations

import numpy as np
from ray.serve.handle import DeploymentHandle

from deployments.api_calls import api_errors
from deployments.face_pipeline import FacePipeline
from deployments.stream_api import StreamApi
from deployments.tenant_calls import TenantCalls
from securegate import errors
from securegate import schemas as s
from tenancy import operations as op
from tenancy.quality import chosen_face


class PersonApi:
    """`cameras`: the camera events a person's deletion, merge or rejection of an unknown also changes."""

    def __init__(self, pipeline: FacePipeline, tenants: DeploymentHandle, calls: TenantCalls, cameras: StreamApi) -> None:
        self.pipeline, self.tenants, self.calls, self.cameras = pipeline, tenants, calls, cameras

    @api_errors
    async def create_person(self, api_key: str, external_id: str | None = None, metadata: dict | None = None) -> dict:
        person = s.PersonCreate(external_id=external_id, metadata=metadata or {})  # the HTTP body's bounds, for handle callers too
        return self.calls.answered(api_key, await self.tenants.create_person.remote(
            op.CreatePerson(op.ApiKeyCaller(api_key), person.external_id, person.metadata)))

    @api_errors
    async def list_persons(self, api_key: str, limit: int = 50, cursor: str | None = None, external_id: str | None = None) -> dict:
        """One page of persons in creation order; with `external_id`, the one person holding it (or none),
        found through the blind index rather than by reading pages."""
        if not 1 <= limit <= s.PAGE_LIMIT_MAX:  # the HTTP query's bounds, for handle callers too
            raise errors.InvalidRequest(f"limit must be between 1 and {s.PAGE_LIMIT_MAX}")
        if external_id is not None and cursor is not None:
            raise errors.InvalidRequest("external_id finds one person: it takes no cursor")
        caller = op.ApiKeyCaller(api_key)
        if external_id is not None:
            external_id = s.PersonCreate(external_id=external_id).external_id  # the HTTP query's bounds, for handle callers too
            return self.calls.answered(api_key, await self.tenants.find_person.remote(op.FindPerson(caller, external_id)))
        return self.calls.answered(api_key, await self.tenants.list_persons.remote(op.ListPersons(caller, limit, cursor)))

    @api_errors
    async def get_person(self, api_key: str, person_id: str) -> dict:
        return self.calls.answered(api_key, await self.tenants.get_person.remote(op.GetPerson(op.ApiKeyCaller(api_key), person_id)))

    @api_errors
    async def delete_person(self, api_key: str, person_id: str) -> None:
        done = await self.tenants.delete_person.remote(op.DeletePerson(op.ApiKeyCaller(api_key), person_id))
        self.calls.answered(api_key, done)
        await self.cameras.after_person_delete(done.tenant_id, person_id)

    @api_errors
    async def enrol_face(self, api_key: str, person_id: str, image: bytes, face_index: int | None = None) -> dict:
        """One face of `image` becomes a reference face of the person, if it passes the tenant's quality gates."""
        async def attempt(model: str) -> op.FaceEnrolled:
            face = chosen_face(await self.pipeline.faces(image, None, embed_with=model, crops=True), face_index)
            return await self.tenants.enrol_face.remote(op.EnrolFace(op.ApiKeyCaller(api_key), person_id, face, model))

        return self.calls.answered(api_key, await self.calls.run(api_key, attempt))

    @api_errors
    async def delete_face(self, api_key: str, person_id: str, face_id: str) -> None:
        self.calls.answered(api_key, await self.tenants.delete_face.remote(op.DeleteFace(op.ApiKeyCaller(api_key), person_id, face_id)))

    # ---- corrections: "not this person", merge, move ------------------------------------------------------
    @api_errors
    async def reject(self, api_key: str, person_id: str, image: bytes | None = None, face_index: int | None = None,
                     face_id: str | None = None, unknown_id: str | None = None) -> dict:
        """"Not this person": a negative example of the person, from one of `image` (its face, or the one
        `face_index` picks), `face_id` (an enrolled face of another person of this tenant) or `unknown_id` (an
        anonymous id of the camera events: each of its kept samples). Sealed like a face; a later probe closer to
        one of the person's rejections than to all of their faces does not match them. A `person_seen` event
        keeps no face vector (only who and how similar), so a rejection cannot be made from one: use the
        image, or the unknown's id."""
        given = [name for name, value in (("image", image), ("face_id", face_id), ("unknown_id", unknown_id)) if value is not None]
        if len(given) != 1:
            raise errors.InvalidRequest("give exactly one of image, face_id or unknown_id")
        caller = op.ApiKeyCaller(api_key)
        if face_id is not None:
            return self.calls.answered(api_key, await self.tenants.reject_face.remote(op.RejectFace(caller, person_id, face_id)))
        if unknown_id is not None:
            tenant = await self.calls.tenant(api_key)  # the unknown's samples are the StreamSupervisor's, by tenant
            vectors = await self.cameras.take_unknown(tenant, unknown_id)  # refused when of another model
            internal = op.InternalCaller(tenant.tenant_id, caller.principal)
            return self.calls.answered(api_key, await self.tenants.add_rejections.remote(op.AddRejections(
                internal, person_id, np.asarray(vectors, np.float32), tenant.model, "unknown")))

        async def attempt(model: str) -> op.RejectionsAdded:
            # No quality gate: the look-alike was mistaken at whatever quality the camera or photo gave.
            face = chosen_face(await self.pipeline.faces(image, None, embed_with=model), face_index)
            return await self.tenants.add_rejections.remote(op.AddRejections(caller, person_id, face.vector[None], model, "image"))

        return self.calls.answered(api_key, await self.calls.run(api_key, attempt))

    @api_errors
    async def list_rejections(self, api_key: str, person_id: str) -> dict:
        return self.calls.answered(api_key, await self.tenants.list_rejections.remote(op.ListRejections(op.ApiKeyCaller(api_key), person_id)))

    @api_errors
    async def delete_rejection(self, api_key: str, person_id: str, rejection_id: str) -> None:
        self.calls.answered(api_key, await self.tenants.delete_rejection.remote(
            op.DeleteRejection(op.ApiKeyCaller(api_key), person_id, rejection_id)))

    @api_errors
    async def merge_persons(self, api_key: str, person_id: str, merged_person_id: str) -> dict:
        """`merged_person_id` is the same human as `person_id`: their faces and rejections move to `person_id`,
        their camera events name `person_id`, and `merged_person_id` is deleted (404 from then on)."""
        merged = await self.tenants.merge_persons.remote(op.MergePersons(op.ApiKeyCaller(api_key), person_id, merged_person_id))
        relinked = await self.cameras.person_merged(merged.tenant_id, merged_person_id, person_id, merged.external_id)
        body = self.calls.answered(api_key, merged, events_relinked=relinked)
        del body["external_id"]
        return body

    @api_errors
    async def move_face(self, api_key: str, person_id: str, face_id: str, to_person_id: str) -> dict:
        """Face `face_id` was enrolled to the wrong person: it becomes `to_person_id`'s."""
        return self.calls.answered(api_key, await self.tenants.move_face.remote(
            op.MoveFace(op.ApiKeyCaller(api_key), person_id, face_id, to_person_id)))
