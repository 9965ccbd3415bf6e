"""How a tenant's shard actors and its file are named: the Ray namespace, each shard's actor name, the file's path."""

from __future__ import annotations

from pathlib import Path

NAMESPACE = "securegate"


def actor_name(tenant_id: str, shard: int = 0) -> str:
    """`tenant-shard:<id>` for shard 0 (the primary, and the only actor of an unsharded tenant), `#k` after it
    for shard k. (`tenant-index:` before issue 24: the actors are not detached, none outlives the app that made it.)"""
    return f"tenant-shard:{tenant_id}" if shard == 0 else f"tenant-shard:{tenant_id}#{shard}"


class NotPrimary(RuntimeError):
    """A write or person read reached a shard other than the primary (a routing bug, never a client error)."""


def tenant_db_path(data_dir: str | Path, tenant_id: str) -> Path:
    return Path(data_dir) / "tenants" / tenant_id / "embeddings.db"
