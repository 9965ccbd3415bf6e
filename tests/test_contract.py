"""Contract fuzzing: schemathesis drives every operation of the running service from its own OpenAPI
document, and every answer must be no 5xx, a documented status, a documented content type and a body
matching the documented schema.

Bounded: schemathesis' examples + fuzzing phases only (no coverage/stateful phases, no shrinking), a
handful of examples per operation (two for the root-key rotation, which re-wraps every tenant's key), no
deadline, and a wall-clock budget shared out over the operations in turn: each operation sends at least a few
examples, and its generation stops once its share of the clock has passed (time left over goes to the next).

Generated cases are steered towards the code behind the validation layer, so that success answers are
checked too and not only 400s: tenant operations carry the fuzzing tenant's API key and admin operations
the admin token (a few keep their generated `Authorization`), path ids are sometimes real ones of the
fuzzing tenant, and image fields sometimes hold a real photo (one face, two faces, or none). Destructive
operations only ever touch what the test creates for them: DELETE of a tenant, person or admin key
goes to a throwaway one created on the spot, and an API-key rotation of the fuzzing tenant adopts the new key.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
import warnings
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import hostile

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Examples per operation: the root-key rotation re-wraps every tenant's key, so it gets two. A longer hunt:
# SECUREGATE_FUZZ_EXAMPLES=200 SECUREGATE_FUZZ_BUDGET_S=1200 make test PYTEST_ARGS=tests/test_contract.py
MAX_EXAMPLES = {"*": int(os.environ.get("SECUREGATE_FUZZ_EXAMPLES", 20)), "POST /v1/admin/keys/rotate-root": 2}
# Nothing is excluded: destructive operations are steered to throwaway targets (see _steer).
EXCLUDED: set[str] = set()
# Wall clock for the whole fuzzing run: operation i of n may send until (i + 1) / n of it has passed, and sends at
# least MIN_SENT examples whatever the clock says, so a slow host fuzzes every operation less deeply instead of
# dropping the last ones (a single 150 s budget cut the late operations off, and went on generating their examples).
BUDGET_S = float(os.environ.get("SECUREGATE_FUZZ_BUDGET_S", 60))
MIN_SENT = 5

CONFIG = """
[generation]
database = "none"
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Target:
    """The fuzzing tenant and what the test may point generated cases at."""

    base_url: str
    http: httpx.Client
    admin_token: str = field(repr=False)
    tenant_id: str
    api_key: str = field(repr=False)
    person_id: str
    face_id: str
    photos: dict[str, str] = field(repr=False)  # kind → base64
    started: float = field(default_factory=time.monotonic)
    cut: int = 0  # operations whose generation their share of the budget ended
    sent: int = 0

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def tenant(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"}

    def redact(self, text: str) -> str:
        """The photos' base64 (hundreds of KB) shortened to a marker in failure reports."""
        for kind, data in self.photos.items():
            text = text.replace(data, f"<base64 of the {kind} photo>")
        return text

    def throwaway_tenant(self) -> str:
        r = self.http.post("/v1/tenants", json={"name": "contract-throwaway"}, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["tenant_id"]

    def throwaway_admin_key(self) -> str:
        name = f"contract-{secrets.token_hex(4)}"
        r = self.http.post("/v1/admin-keys", json={"name": name, "scopes": ["tenants:read"]}, headers=self.admin)
        assert r.status_code == 201, r.text
        return name

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
            if method == "DELETE" or path.endswith("/api-keys") and auth == "generated":
                params["tenant_id"] = target.throwaway_tenant()
            else:
                params["tenant_id"] = target.tenant_id
        if "face_id" in params:
            params["person_id"], params["face_id"] = target.throwaway_face()
        elif "person_id" in params:
            params["person_id"] = target.throwaway_person() if method == "DELETE" else target.person_id
    if path == "/v1/admin-keys/{name}" and (real_ids or params.get("name") == "bootstrap"):
        params["name"] = target.throwaway_admin_key()  # never the first-start token: the run goes on with it
    if method == "DELETE" and path == "/v1/tenants/{tenant_id}" and params.get("tenant_id") == target.tenant_id:
        params["tenant_id"] = target.throwaway_tenant()  # never the fuzzing tenant: the run goes on with it
    if path == "/v1/events/stream":
        case.query = {**(case.query or {}), "max_s": 1}  # a live stream: bounded, or each call waits for the timeout
    if isinstance(case.body, dict):
        if image is not None:
            for name in ("image", "image_a"):
                if name in case.body:
                    case.body[name] = target.photos[image]
            if "image_b" in case.body:
                case.body["image_b"] = target.photos["other_face"]
        if real_ids and case.body.get("person_id") is not None:
            case.body["person_id"] = target.person_id


class OutOfTime(BaseException):
    """Ends an operation's generation at its deadline (hypothesis lets a BaseException through, not a failure)."""


def fuzz(operation, target: Target, failures: dict[tuple, str], deadline: float) -> int:
    """Positive and negative cases of one operation, steered, sent and checked, until `deadline` once MIN_SENT
    are sent; returns how many were sent. Every distinct failure is recorded (with schemathesis' report and a
    curl reproduction) and the run goes on, so one bug does not hide the others."""
    sent = 0
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=MAX_EXAMPLES.get(operation.label, MAX_EXAMPLES["*"]), phases=[Phase.explicit, Phase.generate],
              deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases, auth=st.sampled_from(["valid", "valid", "valid", "generated"]), real_ids=st.booleans(),
           image=st.sampled_from([None, None, "one_face", "two_faces", "no_face"]))
    def run(case, auth, real_ids, image):
        nonlocal sent
        if sent >= MIN_SENT and time.monotonic() > deadline:
            raise OutOfTime
        _steer(case, target, auth, real_ids, image)
        target.sent += 1
        sent += 1
        try:
            response = case.call_and_validate(base_url=target.base_url, checks=CHECKS, timeout=60)
        except FailureGroup as group:
            key = (operation.label, tuple(sorted({f"{f.title}: {(f.message or '').strip().splitlines()[:1]}"
                                                  for f in group.exceptions})))
            failures.setdefault(key, target.redact(group.message))
            return
        if (response.status_code == 201 and operation.path == "/v1/tenants/{tenant_id}/api-keys"
                and case.path_parameters.get("tenant_id") == target.tenant_id):
            target.api_key = response.json()["api_key"]  # the old key was revoked with it

    try:
        run()
    except OutOfTime:
        target.cut += 1
    return sent


def test_every_answer_matches_the_documented_contract(api_schema, target):
    # an operation schemathesis cannot read is itself a contract failure
    operations = [op for op in (result.ok() for result in api_schema.get_all_operations()) if op.label not in EXCLUDED]
    assert len(operations) >= 20, [op.label for op in operations]  # the whole API is fuzzed, not a filtered-out remainder
    target.started, failures, sent = time.monotonic(), {}, {}
    for i, operation in enumerate(operations):
        sent[operation.label] = fuzz(operation, target, failures, target.started + BUDGET_S * (i + 1) / len(operations))
    assert all(n >= min(MIN_SENT, MAX_EXAMPLES.get(label, MAX_EXAMPLES["*"])) for label, n in sent.items()), sent
    if target.cut:
        warnings.warn(f"contract fuzzing's {BUDGET_S:.0f} s budget ended the generation of {target.cut} of "
                      f"{len(operations)} operations early ({target.sent} requests sent)")
    if failures:
        report = "\n\n".join(f"### {key[0]}\n{message.strip()}" for key, message in failures.items())
        pytest.fail(f"{len(failures)} distinct contract failures in {len({k[0] for k in failures})} of {len(operations)} "
                    f"operations ({target.sent} requests):\n\n{report}", pytrace=False)
