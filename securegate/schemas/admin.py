"""Operator bodies: tenants, admin keys, key rotation and status, model migrations, health."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from securegate.schemas.base import Body
from securegate.schemas.images import ModelInfo


# ---- tenants (admin) -----------------------------------------------------------------------------------------
class TenantCreate(Body):
    name: str = Field(..., min_length=1, max_length=200)
    settings: dict[str, Any] | None = Field(None, description="default_threshold, retention_days, match_on, quality")


class TenantPatch(Body):
    settings: dict[str, Any]


class TenantCreated(BaseModel):
    tenant_id: str
    api_key: str = Field(..., description="shown once; stored only as a hash", repr=False)


class ApiKeyCreated(BaseModel):
    api_key: str = Field(..., repr=False)  # never printed by accident


# ---- admin keys (admin) --------------------------------------------------------------------------------------
# What an admin key may do (tenancy/admin_keys.py; deployments/admin_keys.py maps each admin endpoint to one).
AdminScope = Literal["tenants:read", "tenants:write", "keys:read", "keys:rotate", "audit:read",
                     "admin-keys:read", "admin-keys:write", "models:migrate"]
ADMIN_KEY_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # safe in a URL path and in the key's `sgadmin_<name>_<secret>`


class AdminKeyCreate(Body):
    name: str = Field(..., pattern=ADMIN_KEY_NAME_PATTERN, description="never reused, also once revoked")
    scopes: list[AdminScope] = Field(..., min_length=1, max_length=16,
                                     description="a subset of the calling key's own scopes")


class AdminKeyView(BaseModel):
    name: str
    scopes: list[AdminScope]
    created_at: float
    revoked_at: float | None = None


class AdminKeyCreated(AdminKeyView):
    admin_key: str = Field(..., description="shown once; stored only as a hash", repr=False)


class AdminKeyList(BaseModel):
    admin_keys: list[AdminKeyView]


class TenantView(BaseModel):
    tenant_id: str
    name: str
    model: ModelInfo
    settings: dict[str, Any]
    created_at: float


class ShardPlacement(BaseModel):
    shard: int = Field(..., description="0 is the primary (the tenant file's one writer)")
    state: str = Field(..., description="Ray's actor state: ALIVE, RESTARTING (its node was lost; waiting for a node "
                       "with room), PENDING_CREATION, DEAD; INACTIVE when the tenant is not active (it activates on "
                       "first use); UNKNOWN when Ray's actor table could not be read")
    node_id: str | None = Field(None, description="the Ray node it runs on, while ALIVE")
    node_ip: str | None = None
    pid: int | None = None
    restarts: int | None = Field(None, description="how often Ray restarted it (crashes, node losses)")


class TenantPlacement(TenantView):
    active: bool = Field(..., description="whether any of its shard actors exists")
    shards: list[ShardPlacement]


# ---- keys and health ----------------------------------------------------------------------------------------
class RootKeyRotation(BaseModel):
    previous_root_id: str
    root_id: str
    rewrapped: int
    tenants: int


class KeyRotation(BaseModel):
    tenant_id: str
    version: int
    state: str = Field(..., description="running, done or failed")
    remaining: int | None
    total: int | None
    error: str | None = None


class KeyCache(BaseModel):
    hits: int
    misses: int


class KeyStatus(BaseModel):
    provider: str
    root_id: str
    tenant_count: int
    tenants: dict[str, dict[str, Any]]
    rotations: dict[str, KeyRotation]
    cache: KeyCache = Field(..., description="the unwrapped-key cache of the key service")


class MigrationStart(Body):
    """A tenant's gallery re-embedded with another served pack from its kept crops (tenancy/migration.py)."""

    to: str = Field(..., min_length=1, max_length=32, description="a pack name: `default` or one of settings `packs`")
    batch_size: int = Field(64, ge=1, le=1024, description="crops re-embedded per step (one commit each)")
    hold: bool = Field(False, description="build the shadow index, then wait: POST again with hold false to switch")
    pause_s: float = Field(0.0, ge=0, le=60, description="pause between batches, leaving the CPU to live traffic")


class MigrationStatus(BaseModel):
    tenant_id: str
    pack: str
    from_model: str
    to_model: str
    dim: int
    state: str = Field(..., description="running, ready (shadow complete, held before the switch), done or failed")
    hold: bool
    batch_size: int
    done: int | None = Field(None, description="faces with a vector of the new model")
    total: int | None = Field(None, description="faces of the tenant")
    crops_per_s: float | None = Field(None, description="re-embedding rate, pauses excluded")
    pause_s: float = 0.0
    error: str | None = None
    started_at: float
    updated_at: float


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    detector: dict[str, Any]
    embedder: dict[str, Any]
    keys: bool
    storage: dict[str, Any] = Field(default_factory=dict, description="the data disk: writable, free_bytes")
