"""SecureGate's Prometheus metrics, exported through Ray's metrics agent on every node.

Scrape each node's Ray metrics export port; names carry Ray's `ray_` prefix there
(e.g. `ray_securegate_requests_total`). Metrics are created lazily, once per process, because Ray
metrics can only be made inside a Ray worker.
"""

from __future__ import annotations

import contextvars
import functools

# The tenant of the API call in flight, for labels (set once its API key is authenticated). It lives here,
# in an importable module, because Serve pickles the ingress class by value and a ContextVar can't be.
current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("current_tenant", default="-")

# Who is making the call in flight (`key:<api key id>`): the principal of the tenant's audit log.
current_principal: contextvars.ContextVar[str] = contextvars.ContextVar("current_principal", default="-")

LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


@functools.cache
def requests_total():
    from ray.util.metrics import Counter

    return Counter("securegate_requests_total", description="API calls by endpoint, tenant and outcome (ok or error code)",
                   tag_keys=("endpoint", "tenant", "outcome"))


@functools.cache
def request_seconds():
    from ray.util.metrics import Histogram

    return Histogram("securegate_request_seconds", description="API call latency by endpoint",
                     boundaries=LATENCY_BUCKETS_S, tag_keys=("endpoint",))


@functools.cache
def faces_detected_total():
    from ray.util.metrics import Counter

    return Counter("securegate_faces_detected_total", description="faces found by the detector")


@functools.cache
def embed_batch_size():
    from ray.util.metrics import Histogram

    return Histogram("securegate_embed_batch_size", description="crops per formed embedder batch",
                     boundaries=[1, 2, 4, 8, 16, 24, 32, 64])


@functools.cache
def kms_calls_total():
    from ray.util.metrics import Counter

    return Counter("securegate_kms_calls_total", description="KeyService operations by outcome",
                   tag_keys=("operation", "outcome"))


@functools.cache
def kms_call_seconds():
    from ray.util.metrics import Histogram

    return Histogram("securegate_kms_call_seconds", description="KeyService operation latency",
                     boundaries=LATENCY_BUCKETS_S, tag_keys=("operation",))


@functools.cache
def active_tenants():
    from ray.util.metrics import Gauge

    return Gauge("securegate_active_tenants", description="tenants with a shard actor (per TenantSupervisor replica)")


@functools.cache
def data_disk_full():
    from ray.util.metrics import Gauge

    return Gauge("securegate_data_disk_full", description="1 while the data disk refuses writes (full), else 0",
                 tag_keys=("data_dir",))


@functools.cache
def search_seconds():
    from ray.util.metrics import Histogram

    return Histogram("securegate_search_seconds", description="index search latency by tier",
                     boundaries=[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], tag_keys=("tier",))


@functools.cache
def index_memory_bytes():
    from ray.util.metrics import Gauge

    return Gauge("securegate_index_memory_bytes", description="memory held by a tenant's index",
                 tag_keys=("tenant", "shard"))


def exported() -> bool:
    """Whether metrics can be recorded here: Ray metrics exist only inside a Ray worker or driver (code such as
    TenantShard also runs without Ray, in tests and tools)."""
    import ray

    return ray.is_initialized()
