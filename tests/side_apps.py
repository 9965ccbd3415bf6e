"""A second SecureGate application in the session's Ray cluster, over its own data dir, for tests that need one
(a data dir of their own to cut or fill): its own TenantSupervisor and Ingress, borrowing the session app's Detector,
Embedder and KeyService (model replicas are the expensive part, and none of these tests change them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_side_app(name: str, prefix: str, models_dir: Path, data_dir: Path, *,
                 supervisor_options: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> None:
    """Deploy `name` at `prefix` (Serve's HTTP port); `supervisor_options`: Serve options of its TenantSupervisor."""
    from ray import serve

    from deployments.ingress import Ingress
    from deployments.tenants import TenantSupervisor
    from securegate.settings import Settings

    values = Settings.from_args({"models": str(models_dir), "data_dir": str(data_dir), **(settings or {})}).model_dump()
    borrowed = {n: serve.get_deployment_handle(n, "securegate") for n in ("Detector", "Embedder", "KeyService")}
    tenants = TenantSupervisor.options(**(supervisor_options or {})).bind(values, borrowed["KeyService"])
    serve.run(Ingress.bind(values, borrowed["Detector"], borrowed["Embedder"], tenants, borrowed["KeyService"]),
              name=name, route_prefix=prefix)
