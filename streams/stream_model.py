"""The model cameras embed faces with (the default pack's Embedder) and the threshold a tenant's cameras match at."""

from __future__ import annotations

from securegate import errors
from tenancy.tenant import match_threshold


class StreamModel:
    """Needs the Embedder handle and the settings (`verify_threshold`)."""

    def __init__(self, embedder, settings) -> None:
        self.embedder, self.settings = embedder, settings
        self._model_id: str | None = None
        self._model_threshold: float | None = None

    async def model_id(self) -> str:
        """The model cameras embed faces with: the default pack's Embedder (`check` refuses tenants bound to
        another). An unknown's vectors are sealed bound to it."""
        if self._model_id is None:
            info = await self.embedder.info.remote()
            self._model_id = info["model_id"]
        return self._model_id

    async def check(self, tenant_id: str, tenant) -> None:
        """Camera faces are embedded by the default pack's Embedder: a tenant moved onto another pack by a model
        migration (docs/models.md "Model upgrades") gets its cameras refused (the worker shows this error) rather
        than searched with another model's vectors."""
        model = await self.model_id()
        if tenant.model != model:
            raise errors.ModelMismatch(f"cameras embed with the default pack ({model}); tenant {tenant_id} is bound to {tenant.model}")

    async def threshold(self, tenant) -> float:
        """The tenant's threshold, else the service's `verify_threshold`, else the model's default."""
        return await match_threshold(None, tenant.settings, self.settings.verify_threshold, self._model_default)

    async def _model_default(self) -> float:
        if self._model_threshold is None:
            self._model_threshold = float((await self.embedder.info.remote())["default_threshold"])
        return self._model_threshold
