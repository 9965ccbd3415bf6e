"""An unknown becomes a person: all or nothing, across the two files it touches.

The person and their faces live in the tenant's embeddings.db (its shard actor, the TenantSupervisor); the
unknown and its events in events.db (the StreamSupervisor). No transaction spans both, so the promotion is a
short saga with its intent written first:

    1. check: the unknown exists and was embedded with the model the tenant is bound to (else 422
       model_mismatch: another model's vectors never enter the gallery)
    2. intent: events.db records the person id this promotion makes (`promotions`), durably
    3. the person and all their faces in ONE commit of embeddings.db, under that id (idempotent on it:
       a retry finds the person made and adds nothing)
    4. ONE commit of events.db: the unknown's events name the person, the unknown and the intent go

A failure at 3 leaves nothing but the intent (the next attempt reuses its person id). A failure at 4 deletes
the person made at 3 (compensation) and answers the error; only if that fails too does a person stand
beside the unknown, and the intent finishes the promotion at the next attempt or StreamSupervisor start
(`recover`). Promotions of one tenant run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from securegate import errors
from streams.store import StreamStore
from tenancy import operations as op

log = logging.getLogger(__name__)


class UnknownNotFound(LookupError):
    """No such unknown (or it was promoted meanwhile)."""


class UnknownOfAnotherModel(Exception):
    """The unknown's vectors were embedded by another model than the tenant's gallery holds."""


class UnknownPromotion:
    """Needs: `store(tenant_id)` → StreamStore, `event_keys(tenant_id)` → the event keys (blind index complete), `unknowns(tenant_id,
    ciphers)` → the service's cached unknown index, the TenantSupervisor handle, and `relinked(tenant_id, old_id,
    person_id)`, told when events changed identity (the service's cooldowns follow)."""

    def __init__(self, store: Callable[[str], StreamStore], event_keys: Callable[..., Awaitable], unknowns: Callable[..., Awaitable],
                 tenants, relinked: Callable[[str, str, str], None]) -> None:
        self.store, self.event_keys, self.unknowns, self.tenants, self.relinked = store, event_keys, unknowns, tenants, relinked
        self._locks: dict[str, asyncio.Lock] = {}

    async def vectors(self, tenant, unknown_id: str):
        """The unknown's vectors, for the tenant's gallery: refused when they are another model's."""
        ciphers = await self.event_keys(tenant.tenant_id)
        entry = (await self.unknowns(tenant.tenant_id, ciphers)).get(unknown_id)
        if entry is None:
            raise UnknownNotFound(f"unknown {unknown_id} not found")
        if entry["model"] != tenant.model:
            raise UnknownOfAnotherModel(f"unknown {unknown_id} was embedded by model {entry['model']}; the tenant's gallery "
                                        f"holds model {tenant.model} (a model migration re-embeds faces, not camera samples)")
        return entry["vectors"]

    async def promote(self, tenant, unknown_id: str, external_id: str | None, metadata: dict, principal: str) -> dict:
        tenant_id = tenant.tenant_id
        async with self._locks.setdefault(tenant_id, asyncio.Lock()):
            vectors = await self.vectors(tenant, unknown_id)
            store = self.store(tenant_id)
            person_id = store.begin_promotion(unknown_id, uuid.uuid4().hex)
            made = await self.tenants.create_person_with_faces.remote(op.CreatePersonWithFaces(
                op.InternalCaller(tenant_id, principal), person_id, external_id, metadata, vectors, tenant.model))
            try:
                events = await self._finish(tenant_id, unknown_id, person_id, made.external_id)
            except BaseException:
                if made.created:
                    await self._undo(tenant, person_id, principal)
                raise
            return {"person_id": person_id, "external_id": made.external_id, "faces": made.faces, "events": events}

    async def _finish(self, tenant_id: str, unknown_id: str, person_id: str, external_id: str | None) -> int:
        ciphers = await self.event_keys(tenant_id)
        events = self.store(tenant_id).finish_promotion(ciphers, unknown_id, person_id, external_id)
        (await self.unknowns(tenant_id, ciphers)).pop(unknown_id, None)
        self.relinked(tenant_id, unknown_id, person_id)
        return events

    async def _undo(self, tenant, person_id: str, principal: str) -> None:
        try:
            await self.tenants.delete_person.remote(op.DeletePerson(op.InternalCaller(tenant.tenant_id, principal), person_id))
        except Exception:  # the intent stays: the next attempt or the next start finishes the promotion
            log.exception("tenant %s: promotion to person %s left half-done; it finishes at the next attempt or start",
                          tenant.tenant_id, person_id)

    async def recover(self, tenant) -> int:
        """At start: promotions begun and not finished. A person made under the intent's id gets the unknown's
        events (the promotion finishes); without one, the intent goes (nothing was made). Returns how many."""
        tenant_id = tenant.tenant_id
        pending = self.store(tenant_id).pending_promotions()
        async with self._locks.setdefault(tenant_id, asyncio.Lock()):
            for unknown_id, person_id in pending.items():
                try:
                    person = await self.tenants.get_person.remote(op.GetPerson(op.InternalCaller(tenant_id, "promotion"), person_id))
                except Exception as exc:
                    if errors.to_api_error(exc).code != errors.NotFound.code:
                        raise
                    self.store(tenant_id).abandon_promotion(unknown_id)
                    continue
                await self._finish(tenant_id, unknown_id, person_id, person.external_id)
        return len(pending)
