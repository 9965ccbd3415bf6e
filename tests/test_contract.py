"""Contract fuzzing: schemathesis drives every operation of the running service from its own OpenAPI
document, and every answer must be no 5xx, a documented status, a documented content type and a body
matching the documented schema.

Bounded: schemathesis' examples + fuzzing phases only (no coverage/stateful phases, no shrinking), a
handful of examples per operation (two for the root-key rotation, which re-wraps every tenant's key), no
deadline, and a wall-clock budget after which the remaining examples are not sent.

Generated cases are steered towards the code behind the validation layer, so that success answers are
checked too and not only 400s: tenant operations carry the fuzzing tenant's API key and admin operations
the admin token (a few keep their generated `Authorization`), path ids are sometimes real ones of the
fuzzing tenant, and image fields sometimes hold a real photo (one face, two faces, or none). Destructive
operations only ever touch what the test creates for them: DELETE of a tenant or person goes to a
throwaway one created on the spot, and an API-key rotation of the fuzzing tenant adopts the new key.
"""

from __future__ import annotations

import base64
import time
import warnings
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import hostile

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 12
BUDGET_S = 150  # wall clock for the whole fuzzing run; examples past it are generated but not sent

CONFIG = """
[phases.coverage]
enabled = false

[phases.stateful]
enabled = false

[generation]
max-examples = %d
database = "none"

[[operations]]
include-name = "POST /v1/admin/keys/rotate-root"
generation.max-examples = 2
""" % MAX_EXAMPLES


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Target:
    """The fuzzing tenant and what the test may point generated cases at."""

    base_url: str
    http: httpx.Client
    admin_token: str
    tenant_id: str
    api_key: str
    person_id: str
    face_id: str
    photos: dict[str, str]  # kind → base64
    started: float = field(default_factory=time.monotonic)
    skipped: int = 0

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def tenant(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"}

    def throwaway_tenant(self) -> str:
        r = self.http.post("/v1/tenants", json={"name": "contract-throwaway"}, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["tenant_id"]

    def throwaway_person(self) -> str:
        r = self.http.post("/v1/persons", json={}, headers=self.tenant)
        assert r.status_code == 201, r.text
        return r.json()["person_id"]

    def throwaway_face(self) -> tuple[str, str]:
        person_id = self.throwaway_person()
        r = self.http.post(f"/v1/persons/{person_id}/faces", json={"image": self.photos["one_face"]}, headers=self.tenant)
        assert r.status_code == 201, r.text
        return person_id, r.json()["face_id"]


@pytest.fixture(scope="module")
def target(app, http, data_dir, identity_photos, faces_root):
    assert http.get("/v1/readyz").status_code == 200
    admin_token = (data_dir / "admin_token").read_text().strip()
    admin = {"Authorization": f"Bearer {admin_token}"}
    before = {t["tenant_id"] for t in http.get("/v1/tenants", headers=admin).json()}

    created = http.post("/v1/tenants", json={"name": "contract-fuzzing"}, headers=admin).json()
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    photos = {"one_face": b64(identity_photos["obama"][0].read_bytes()),
              "other_face": b64(identity_photos["obama"][1].read_bytes()),
              "two_faces": b64((faces_root / "scenes" / "kit_with_rose.jpg").read_bytes()),
              "no_face": b64(hostile.faceless_photo())}
    person_id = http.post("/v1/persons", json={"external_id": "fuzz-target"}, headers=auth).json()["person_id"]
    r = http.post(f"/v1/persons/{person_id}/faces", json={"image": photos["one_face"]}, headers=auth)
    assert r.status_code == 201, r.text
    yield Target(app[1], http, admin_token, created["tenant_id"], created["api_key"], person_id, r.json()["face_id"], photos)

    # Leave the session as it was: no fuzzing tenants (the generated POST /v1/tenants made some) stay behind.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # let content-key rotations the fuzzer started finish first
        rotations = http.get("/v1/admin/keys/status", headers=admin).json().get("rotations", {})
        if all(r.get("state") != "running" for r in rotations.values()):
            break
        time.sleep(0.2)
    for tenant in http.get("/v1/tenants", headers=admin).json():
        if tenant["tenant_id"] not in before:
            http.delete(f"/v1/tenants/{tenant['tenant_id']}", headers=admin)


@pytest.fixture(scope="module")
def api_schema(target):
    config = schemathesis.Config.from_str(CONFIG)
    return schemathesis.openapi.from_url(f"{target.base_url}/openapi.json", config=config, timeout=30)


schema = schemathesis.pytest.from_fixture("api_schema")


def _steer(case, target: Target, auth: str, real_ids: bool, image: str | None) -> None:
    """Point a generated case at real credentials, ids and photos (see the module docstring)."""
    op = case.operation
    method, path, tags = op.method.upper(), op.path, set(op.tags or ())
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    generated = (case.headers or {}).get("authorization")
    if auth == "generated":
        if generated is not None:
            headers["authorization"] = generated
    elif "admin" in tags:
        headers["authorization"] = f"Bearer {target.admin_token}"
    elif "authorization" in op.headers:
        headers["authorization"] = f"Bearer {target.api_key}"
    case.headers = headers

    params = case.path_parameters
    if real_ids and params:
        if "tenant_id" in params:
            if method == "DELETE":
                params["tenant_id"] = target.throwaway_tenant()
            else:
                params["tenant_id"] = target.tenant_id
        if "face_id" in params:
            params["person_id"], params["face_id"] = target.throwaway_face()
        elif "person_id" in params:
            params["person_id"] = target.throwaway_person() if method == "DELETE" else target.person_id
    if isinstance(case.body, dict):
        if image is not None:
            for name in ("image", "image_a"):
                if name in case.body:
                    case.body[name] = target.photos[image]
            if "image_b" in case.body:
                case.body["image_b"] = target.photos["other_face"]
        if real_ids and case.body.get("person_id") is not None:
            case.body["person_id"] = target.person_id


@schema.parametrize()
@schema.given(
    auth=st.sampled_from(["valid", "valid", "valid", "generated"]),
    real_ids=st.booleans(),
    image=st.sampled_from([None, None, "one_face", "two_faces", "no_face"]),
)
@settings(phases=[Phase.explicit, Phase.generate], deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_documented_contract(case, target, auth, real_ids, image):
    if time.monotonic() - target.started > BUDGET_S:
        target.skipped += 1
        return
    _steer(case, target, auth, real_ids, image)
    response = case.call_and_validate(base_url=target.base_url, checks=CHECKS, timeout=60)
    if (response.status_code == 201 and case.operation.path == "/v1/tenants/{tenant_id}/api-keys"
            and case.path_parameters.get("tenant_id") == target.tenant_id):
        target.api_key = response.json()["api_key"]  # the old key was revoked with it


def test_the_fuzzing_run_stayed_within_budget(target):
    """Runs after the fuzzing (same module, in order): report how much of the budget went unused."""
    if target.skipped:
        warnings.warn(f"contract fuzzing hit its {BUDGET_S}s budget; {target.skipped} generated examples were not sent")
