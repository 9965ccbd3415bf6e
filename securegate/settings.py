"""SecureGate's settings: one typed tree, filled from a Serve config's `args`, CLI flags and environment.

Everything has an embedded default so `securegate serve` runs with no configuration at all. Values that
must change without a restart (batching policy, detection threshold) are the deployments' `user_config`,
not settings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(Strict):
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0, description="largest accepted request body")
    max_image_pixels: int = Field(40_000_000, gt=0, description="largest width*height, checked from the header")
    max_faces: int = Field(32, gt=0, description="faces processed per image (largest first)")


class DetectorSettings(Strict):
    det_size: int = Field(640, ge=64, description="SCRFD input square")
    det_thresh: float = Field(0.5, gt=0, lt=1)
    # SCRFD through insightface runs one image per call. Several one-thread inferences at once use the cores
    # better than one inference on several threads (the insightface reference is fastest as N processes x 1
    # thread), and threads x concurrency above the replica's cores only adds switching (benchmarks/pipeline.py).
    threads: int | None = Field(1, ge=1, description="ONNX Runtime intra-op threads per inference; None = ORT default")
    concurrency: int = Field(2, ge=1, description="images decoded and detected at once per replica")
    # insightface pads every image into the det_size square; the padding is inference on no pixels (a 4:3 photo
    # wastes 25 %). Fitted: the long side at det_size, the short side rounded up to 32 (vision/detector.py).
    fit_aspect: bool = Field(True, description="run SCRFD at each image's aspect ratio instead of a padded square")
    # One image alone on the replica would leave the other cores idle on a 1-thread session: it runs on a
    # session with this many threads instead (latency at low load, benchmarks/pipeline.py concurrency 1).
    idle_threads: int | None = Field(2, ge=1, description="ONNX Runtime threads for an image that arrives while the "
                                     "replica detects nothing else; None or equal to `threads` = off (CPU only)")


class AdmissionSettings(Strict):
    """When an image request is refused (503 `overloaded` + Retry-After) rather than queued (deployments/admission.py)."""

    latency_budget_s: float = Field(2.0, gt=0, description="p99 latency target of an image request: refused when its "
                                    "expected time at the Detector (queue wait, detection, embedding) would exceed it")


class EmbedderSettings(Strict):
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.05, ge=0)
    threads: int | None = Field(None, ge=1)


class KeySettings(Strict):
    """Which key provider holds the org root key (`local` is the development default: not for production)."""

    provider: Literal["local", "aws", "pkcs11"] = "local"
    options: dict[str, Any] = Field(default_factory=dict)
    cache_ttl_s: float = Field(60.0, ge=0)
    max_concurrent_provider_calls: int = Field(8, ge=1)
    keystore_dir: str | None = Field(None, description="where the key store (wrapped tenant keys, the org audit's head "
                                     "anchor) and the local root key live; None = {data_dir}/keys. Another volume "
                                     "than the data dir keeps the audit's anchor out of reach of its writers")


class TenancySettings(Strict):
    idle_evict_s: float = Field(900.0, gt=0, description="an idle tenant's shard actor is evicted after this")
    ann_min_faces: int = Field(200_000, ge=1, description="tenants this large also get the ANN tier")
    # Ray sets OMP_NUM_THREADS from num_cpus (=> 1 BLAS thread at 0.05); an exact search needs the cores, so
    # the default says its threads explicitly (configs/local.yaml explains; docs/search.md "Search as deployed").
    # `index_actor_options` is its name before issue 24, still read so that existing configs keep working.
    shard_actor_options: dict[str, Any] = Field(default_factory=lambda: {
        "num_cpus": 0.05, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}}},
        validation_alias=AliasChoices("shard_actor_options", "index_actor_options"))  # the second: before issue 24
    retention_check_s: float = Field(3600.0, gt=0, description="how often faces past a tenant's retention are deleted")
    # After a node loss Ray restarts its shard actors where their resources fit; with no room anywhere they wait.
    restart_wait_s: float = Field(20.0, gt=0, description="how long a call waits for a tenant's shard actor that has "
                                  "no running process (node lost, no room elsewhere yet) before it answers 503")


class StreamSettings(Strict):
    """Cameras (streams/): detection size for frames, the per-camera frame queue, workers and webhooks."""

    det_size: int = Field(320, ge=64, description="SCRFD input square for camera frames (faces of ~40 px and up at 640x360)")
    det_threads: int | None = Field(1, ge=1, description="ONNX Runtime threads of the frame detector: one, so the "
                                    "other core decodes and tracks (benchmarks/streams.py); None = ORT default")
    queue_frames: int = Field(2, ge=1, description="frames a camera may have waiting; older ones are dropped")
    # A worker uses ~15 ms of CPU per frame (~0.08 of a core at 5 fps); its reservation is a scheduling slot
    # small enough that 8 cameras fit beside the deployments on a 2-core machine (configs/local.yaml).
    worker_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0.02},
                                           description="Ray options of each camera's stream worker actor")
    max_streams_per_tenant: int = Field(64, ge=1)
    # Each unknown keeps up to 8 samples in the StreamSupervisor's memory: 16 KiB at 512-d, so 160 MiB per tenant at the cap.
    max_unknowns_per_tenant: int = Field(10_000, ge=1, description="anonymous ids a tenant's cameras re-identify; a new "
                                         "stranger beyond it evicts the least recently seen (its events stay)")
    media_dirs: list[str] = Field(default_factory=list, description="directories file sources may be read from, "
                                  "besides {data_dir}/media (a tenant names a file; it must not reach any other file)")
    webhook_max_attempts: int = Field(6, ge=1, description="deliveries failing this often go to the dead-letter list")
    webhook_backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles per attempt")
    webhook_timeout_s: float = Field(5.0, gt=0)


def default_data_dir() -> str:
    return os.environ.get("SECUREGATE_DATA_DIR") or str(Path("~/.securegate").expanduser())


DEFAULT_PACK = "default"  # the name of the pack `models` names: new tenants are bound to it
PACK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"  # also a Serve deployment name suffix: Embedder-<name>


class Settings(Strict):
    models: str | None = Field(None, description="model pack directory; None = $SECUREGATE_MODELS, then antelopev2")
    packs: dict[str, str] = Field(default_factory=dict, description="further model packs served beside `models`, by "
                                  "name: {name: directory or InsightFace pack name}; each has its own Embedder "
                                  "deployment (Embedder-<name>); `securegate migrate --to NAME` moves a tenant onto one")
    data_dir: str = Field(default_factory=default_data_dir)
    verify_threshold: float | None = Field(None, ge=-1, le=1, description="None = the model pack's default")
    limits: Limits = Field(default_factory=Limits)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    keys: KeySettings = Field(default_factory=KeySettings)
    tenancy: TenancySettings = Field(default_factory=TenancySettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)

    @field_validator("packs")
    @classmethod
    def _pack_names(cls, packs: dict[str, str]) -> dict[str, str]:
        for name in packs:
            if name == DEFAULT_PACK or not re.fullmatch(PACK_NAME_PATTERN, name):
                raise ValueError(f"pack name {name!r} must match {PACK_NAME_PATTERN} and not be {DEFAULT_PACK!r}")
        return packs

    def keys_dir(self) -> Path:
        """The KeyService's directory: `keys.keystore_dir`, else {data_dir}/keys."""
        return Path(self.keys.keystore_dir or Path(self.data_dir) / "keys").expanduser()

    def pack_source(self, name: str) -> str | None:
        """Where the pack named `name` comes from (None: the default resolution of `models`)."""
        if name == DEFAULT_PACK:
            return self.models
        if name not in self.packs:
            raise ValueError(f"no model pack named {name!r}; served: {[DEFAULT_PACK, *self.packs]}")
        return self.packs[name]

    @classmethod
    def from_args(cls, args: dict[str, Any] | None = None) -> "Settings":
        """Serve config `args` (or CLI overrides) on top of defaults; SECUREGATE_MODELS fills `models`
        when unset, so replicas started anywhere in the cluster agree with the driver."""
        values = dict(args or {})
        if not values.get("models") and os.environ.get("SECUREGATE_MODELS"):
            values["models"] = os.environ["SECUREGATE_MODELS"]
        return cls.model_validate(values)
