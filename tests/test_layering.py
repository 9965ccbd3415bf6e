"""Dependencies point one way: the HTTP ingress maps errors through securegate/errors.py and receives tenants
as plain types, so its replica never loads the index (FAISS) or the stores (apsw, tenancy.store)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from securegate import errors
from tenancy import admin_keys, fence, operations, placement, ratelimit, reads, registry, service, store
from tenancy.tenant import Tenant, TenantSettings

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("faiss", "apsw", "tenancy.store", "tenancy.index", "tenancy.actors", "tenancy.service", "tenancy.registry",
         "tenancy.sqlite", "tenancy.ratelimit")


def test_ingress_replica_loads_no_index_or_store():
    """Import the ingress, then unpickle what the TenantSupervisor sends it (a Tenant; a typed answer; a domain error
    translated at the TenantSupervisor's boundary), in a fresh interpreter."""
    tenant = Tenant("t1", "acme", "mobilefacenet/128", 128, TenantSettings(), 1.0)
    admin_key = admin_keys.AdminKey("ops", ("tenants:read",), 1.0)  # what check_admin answers
    answer = operations.SearchAnswer("t1", tenant.model, [[operations.Match("p1", "e1", "f1", 0.5)]], 0.3)
    sent = pickle.dumps((tenant, admin_key, answer, errors.declared_api_error(store.NotFound("person p1 not found"))))
    code = ("import pickle, sys; import deployments.ingress; "
            f"pickle.loads({sent!r}); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"the ingress replica loaded {out.stdout.strip()}"


@pytest.mark.parametrize("exc, api_error, details", [
    (registry.InvalidApiKey("malformed API key"), errors.Unauthenticated, {}),
    (registry.TenantNotFound("tenant t1 not found"), errors.NotFound, {}),
    (service.Forbidden("not an admin token"), errors.Forbidden, {}),
    (admin_keys.NotAnAdminKey("not a live admin key"), errors.Forbidden, {}),
    (admin_keys.MissingScope("admin key 'ops' lacks the scope 'keys:rotate'"), errors.Forbidden, {}),
    (admin_keys.AdminKeyConflict("names are never reused"), errors.Conflict, {}),
    (admin_keys.AdminKeyNotFound("no admin key named 'x'"), errors.NotFound, {}),
    (admin_keys.InvalidAdminKeyRequest("bad scope"), errors.InvalidRequest, {}),
    (service.TenantUnavailable("tenant index restarted during search; retry"), errors.ServiceUnavailable, {}),
    (reads.ShardedCentroidSearch("match_on 'centroid' is not available"), errors.InvalidRequest, {}),
    (placement.ShardsUnplaced("tenant t1: shard(s) [1] are waiting for a node with room"), errors.ServiceUnavailable, {}),
    (fence.StaleWriter("tenant t1: this shard actor (writer epoch 1) was superseded"), errors.ServiceUnavailable, {}),
    (fence.WriterBusy("tenant t1: its file has a write open in another process"), errors.ServiceUnavailable, {}),
    (store.NotFound("person p1 not found"), errors.NotFound, {}),
    (store.DuplicateExternalId("external id e1 is taken"), errors.Conflict, {}),
    (store.ModelMismatch("file is for another model"), errors.ModelMismatch, {}),
    (store.CorruptRecord("f1"), errors.CorruptRecord, {"face_id": "f1"}),
    (store.InvalidCursor("not a cursor"), errors.InvalidRequest, {}),
    (store.InvalidMetadata("NaN in metadata"), errors.InvalidRequest, {}),
    (ratelimit.RateLimited(0.12345), errors.RateLimited, {"retry_after_s": 0.123}),
])
def test_domain_errors_declare_their_api_error(exc, api_error, details):
    mapped = errors.to_api_error(exc)
    assert type(mapped) is api_error
    assert mapped.message == str(exc) and mapped.details == details
    # Across Ray processes (pickled) it keeps its type and details.
    again = pickle.loads(pickle.dumps(mapped))
    assert type(again) is api_error and again.body() == mapped.body()


def test_undeclared_errors_are_internal():
    mapped = errors.to_api_error(KeyError("boom"))
    assert type(mapped) is errors.ApiError and mapped.status == 500 and mapped.code == "internal"
