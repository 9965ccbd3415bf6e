"""Which model an API key's tenant is bound to, as the TenantSupervisor last answered: the Ingress embeds a request's
faces (the Detector hands them to that model's Embedder) before the one TenantSupervisor call that authenticates the key.

A hint, never a credential: the TenantSupervisor checks the vectors' model against the tenant's binding and refuses
others with the tenant's model (422 `model_mismatch`, detail `tenant_model`); the request is then embedded
again with that model, once, if this deployment serves it. A key seen first, or after a model migration's
switch, costs that one extra embedding; every later request goes straight.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from securegate import errors
from tenancy.tenant import InvalidApiKey, parse_api_key

T = TypeVar("T")
KEYS_REMEMBERED = 10_000  # least recently used forgotten first


def key_id(api_key: str) -> str | None:
    """The public id of an API key (`sg_<id>_<secret>`), or None for something else (the TenantSupervisor refuses it)."""
    try:
        return parse_api_key(api_key)[0]
    except InvalidApiKey:
        return None


class TenantModels:
    """`packs()`: (the model id new tenants are bound to, the model ids this deployment embeds with), asked once."""

    def __init__(self, packs: Callable[[], Awaitable[tuple[str, set[str]]]]) -> None:
        self._packs = packs
        self.default: str | None = None
        self.served: set[str] = set()
        self._known: OrderedDict[str, tuple[str, str]] = OrderedDict()  # key id -> (tenant id, model id)

    async def model_of(self, api_key: str) -> str:
        if self.default is None:
            self.default, self.served = await self._packs()
        known = self._known.get(key_id(api_key) or "")
        return known[1] if known else self.default

    def tenant_of(self, api_key: str) -> str | None:
        """The tenant a key answered for last (a metrics label for requests that fail)."""
        known = self._known.get(key_id(api_key) or "")
        return known[0] if known else None

    def learn(self, api_key: str, tenant_id: str, model: str) -> None:
        kid = key_id(api_key)
        if kid is None:
            return
        self._known[kid] = (tenant_id, model)
        self._known.move_to_end(kid)
        while len(self._known) > KEYS_REMEMBERED:
            self._known.popitem(last=False)

    async def run(self, api_key: str, attempt: Callable[[str], Awaitable[T]]) -> T:
        """`attempt(model id)`: embed with that model and make the TenantSupervisor call; again with the tenant's model
        when the TenantSupervisor says the tenant is bound to another one."""
        model = await self.model_of(api_key)
        try:
            return await attempt(model)
        except Exception as exc:
            cause = errors.root_cause(exc)
            bound = cause.details.get("tenant_model") if isinstance(cause, errors.ModelMismatch) else None
            if bound is None or bound == model:
                raise
            if bound not in self.served:
                raise errors.ModelMismatch(f"tenant is bound to model {bound}; this deployment serves "
                                           f"{', '.join(sorted(self.served))}") from None
            tenant = self.tenant_of(api_key)
            self.learn(api_key, tenant or "-", bound)
            return await attempt(bound)
