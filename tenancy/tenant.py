"""What a tenant is: its settings, its record and the format of its API keys. Plain types, no storage:
the registry (tenancy/registry.py) stores them; the HTTP ingress and the camera workers receive them from
the TenantSupervisor, so unpickling one imports this module only (no SQLite driver, no index).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from securegate import errors

KEY_PREFIX = "sg"


class RegistryError(Exception):
    pass


class TenantNotFound(RegistryError):
    api_error = errors.NotFound


class InvalidApiKey(RegistryError):
    api_error = errors.Unauthenticated


class QualityGates(BaseModel):
    """Enrolment refuses faces that fail any gate (reasons are reported)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # stored as JSON, which has neither
    min_face_px: float = Field(40.0, ge=0, description="shorter side of the face box, in pixels")
    min_sharpness: float = Field(30.0, ge=0, description="variance of the Laplacian of the aligned crop")
    max_yaw: float = Field(0.6, ge=0, le=1, description="nose offset from the eyes' midline / eye distance")
    min_det_score: float = Field(0.6, ge=0, le=1)
    min_brightness: float = Field(30.0, ge=0, le=255, description="mean luma (0-255) of the aligned face; darker faces "
                                  "are refused as underexposed (docs/cameras-quality.md)")


class TenantSettings(BaseModel):
    # Bounded: every value is stored, returned and used in float arithmetic (retention cut-off, token bucket).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    default_threshold: float | None = Field(None, ge=-1, le=1, description="None = the model pack's")
    retention_days: int | None = Field(None, ge=1, le=36_500, description="faces older than this are deleted; None = keep")
    match_on: Literal["faces", "centroid"] = "faces"
    shards: int = Field(1, ge=1, le=64, description="shard actors the tenant's faces are split over (by face id); "
                        "a change takes effect at the next activation")
    rate_limit_per_s: float | None = Field(None, ge=0.001, le=1e6, description="steady requests/s for the tenant; None = unlimited")
    rate_limit_burst: int = Field(20, ge=1, le=1_000_000, description="requests allowed at once above the steady rate")
    quality: QualityGates = Field(default_factory=QualityGates)
    keep_enrolment_photos: bool = Field(False, description="keep each enrolled face's aligned crop (112x112, not the "
                                        "photo), sealed with the tenant key and deleted with the face, so the gallery "
                                        "can be re-embedded by a model migration")


async def match_threshold(requested: float | None, settings: TenantSettings | None, verify_threshold: float | None,
                          model_default: Callable[[], Awaitable[float]]) -> float:
    """The similarity threshold a comparison uses: the request's, else the tenant's `default_threshold`, else the
    deployment's `verify_threshold`, else the default of the model (asked only then). The one place of this order."""
    for candidate in (requested, None if settings is None else settings.default_threshold, verify_threshold):
        if candidate is not None:
            return candidate
    return await model_default()


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    model: str  # model id the tenant's vectors belong to, e.g. "glintr100/512"
    dim: int
    settings: TenantSettings
    created_at: float

    def public(self) -> dict:
        return {"tenant_id": self.tenant_id, "name": self.name, "model": {"name": self.model.split("/")[0], "dim": self.dim},
                "settings": self.settings.model_dump(), "created_at": self.created_at}


def parse_api_key(api_key: str) -> tuple[str, str]:
    parts = api_key.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise InvalidApiKey("malformed API key")
    return parts[1], parts[2]
