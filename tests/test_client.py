"""securegate.client.SecureGateClient against the running application, on the real photos.

Every client method runs at least once against the real service (the camera methods in
tests/test_client_cameras.py); error answers map to typed exceptions that always carry the API's code;
`overloaded` is retried; the README example runs as written.
"""

import base64
import contextlib
import io
import json
import shutil
import time
from pathlib import Path

import typing

import httpx
import pydantic
import pytest

from securegate import client as sgc
from securegate import client_encoding, client_errors, errors, schemas
from securegate.client import SecureGateClient, SecureGateError
from tests import hostile
from tests.docs_snippets import doc_snippet
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def admin_token(app, data_dir, http) -> str:
    assert http.get("/v1/readyz").status_code == 200  # the TenantSupervisor has started and written the token
    return (data_dir / "admin_token").read_text().strip()


@pytest.fixture(scope="module")
def admin(app, admin_token):
    with SecureGateClient(app[1], admin_token=admin_token) as client:
        yield client


@pytest.fixture(scope="module")
def tenant(admin):
    """A tenant of its own (created through the client) and a client holding its API key."""
    created = admin.create_tenant("client-tests", settings={"match_on": "faces"})
    assert isinstance(created, sgc.TenantCreated) and created.api_key.startswith("sg_")
    assert created.api_key not in repr(created)  # the key is never printed by accident
    with SecureGateClient(admin.base_url, api_key=created.api_key) as client:
        yield created, client


def test_health_and_readiness(admin):
    assert admin.healthz() == sgc.Health(status="ok")
    ready = admin.readyz()
    assert isinstance(ready, sgc.Readiness) and ready.ready is True
    assert ready.embedder["dim"] == 128


def test_detect_embed_and_verify_take_paths_and_bytes(app, identity_photos, faces_root):
    obama, biden = identity_photos["obama"], identity_photos["biden"]
    with SecureGateClient(app[1]) as sg:  # stateless endpoints need no credentials
        (face,) = sg.detect(obama[0])  # a Path
        assert isinstance(face, sgc.Face) and len(face.bbox) == 4 and len(face.landmarks) == 5 and 0 < face.score <= 1
        scene = faces_root / "scenes" / "kit_with_rose.jpg"
        assert len(sg.detect(str(scene))) == 2  # a str is a path
        assert len(sg.detect(scene.read_bytes(), max_faces=1)) == 1  # bytes

        embedding = sg.embed(bytearray(scene.read_bytes()))
        assert embedding.model == sgc.ModelInfo(name="mobilefacenet_arcface_w128", dim=128)
        assert len(embedding.faces) == 2 and all(len(f.embedding) == 128 for f in embedding.faces)
        assert abs(sum(v * v for v in embedding.faces[0].embedding) - 1) < 1e-3

        same = sg.verify(obama[0], obama[1].read_bytes())
        other = sg.verify(obama[0], biden[0])
        assert same.match is True and bool(same) and other.match is False and not other
        assert same.best_face_similarity is None and same.centroid_similarity is None  # pair form
        strict = sg.verify(obama[0], obama[1], threshold=0.999)
        assert strict.threshold == 0.999 and strict.match is False and strict.similarity == same.similarity


def test_persons_enrolment_search_and_verify(tenant, identity_photos, faces_root):
    _, sg = tenant
    persons = {}
    for who in ("obama", "biden", "kit_harington"):
        persons[who] = sg.create_person(external_id=who, metadata={"source": "shared"}).person_id
    anonymous = sg.create_person()  # both fields are optional
    enrolled = sg.enrol_face(persons["obama"], identity_photos["obama"][0])
    assert isinstance(enrolled, sgc.FaceEnrolled) and enrolled.quality > 0
    sg.enrol_face(persons["biden"], identity_photos["biden"][0].read_bytes())
    # Two faces in the picture: face_index picks one (largest first); kit is the larger one here.
    kit = sg.enrol_face(persons["kit_harington"], faces_root / "scenes" / "kit_with_rose.jpg", face_index=0)

    person = sg.get_person(persons["obama"])
    assert person == sgc.PersonView(person_id=person.person_id, external_id="obama", metadata={"source": "shared"},
                                    created_at=person.created_at, faces=person.faces)
    assert [f.face_id for f in person.faces] == [enrolled.face_id]

    found = sg.search(identity_photos["obama"][1], top_k=2)
    (face,) = found.faces
    top = face.matches[0]
    assert isinstance(top, sgc.SearchMatch) and top.person_id == persons["obama"] and top.external_id == "obama"
    assert top.face_id == enrolled.face_id and top.similarity >= found.threshold
    assert sg.search(faces_root / "scenes" / "lin_manuel_miranda.png", threshold=0.9).faces[0].matches == []
    assert len(sg.search(faces_root / "scenes" / "obama_and_biden.jpg", max_faces=2).faces) == 2

    same = sg.verify_person(identity_photos["obama"][2], persons["obama"])
    other = sg.verify_person(identity_photos["biden"][1], persons["obama"], threshold=0.5)
    assert same.match is True and same.similarity == same.best_face_similarity and same.centroid_similarity is not None
    assert other.match is False and other.threshold == 0.5

    # Pages of one follow the cursor to the end; iter_persons does the same in one loop.
    seen, cursor = [], None
    while True:
        page = sg.list_persons(limit=1, cursor=cursor)
        assert isinstance(page, sgc.PersonPage) and len(page.persons) <= 1
        seen += [p.person_id for p in page.persons]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    everyone = sorted([*persons.values(), anonymous.person_id])
    assert sorted(seen) == everyone
    assert sorted(p.person_id for p in sg.iter_persons(page_size=2)) == everyone

    events = sg.audit(limit=1000).events
    assert events and all(isinstance(e, sgc.AuditEvent) for e in events)
    enrolments = [e for e in events if e.action == "face.enrol"]
    assert len(enrolments) == 3 and all(e.actor.startswith("key:") and e.outcome == "ok" for e in enrolments)
    assert [e.seq for e in sg.iter_audit(page_size=2)] == [e.seq for e in events]
    page = sg.audit(since=events[0].seq, limit=1)
    assert [e.seq for e in page.events] == [events[1].seq] and page.next_since == events[1].seq

    sg.delete_face(persons["kit_harington"], kit.face_id)
    assert sg.get_person(persons["kit_harington"]).faces == []
    sg.delete_person(anonymous.person_id)
    with pytest.raises(sgc.NotFoundError) as err:
        sg.get_person(anonymous.person_id)
    assert err.value.status == 404 and err.value.code == "not_found"


def test_no_face_is_a_typed_422(tenant):
    _, sg = tenant
    pid = sg.create_person(external_id="faceless").person_id
    with pytest.raises(sgc.NoFaceError) as err:
        sg.enrol_face(pid, hostile.faceless_photo())
    assert (err.value.status, err.value.code, err.value.details.get("field")) == (422, "no_face", "image")
    assert isinstance(err.value, sgc.UnprocessableError) and isinstance(err.value, SecureGateError)
    with pytest.raises(sgc.NoFaceError):
        sg.search(hostile.faceless_photo())
    with pytest.raises(sgc.NoFaceError) as err:
        sg.verify(hostile.faceless_photo(), hostile.faceless_photo())
    assert err.value.code == "no_face" and err.value.details["field"] in ("image_a", "image_b")


def test_error_answers_are_typed_and_carry_their_code(tenant, identity_photos, faces_root):
    created, sg = tenant
    pid = sg.create_person(external_id="errors").person_id

    with pytest.raises(sgc.MultipleFacesError) as err:
        sg.enrol_face(pid, faces_root / "scenes" / "kit_with_rose.jpg")
    assert err.value.code == "multiple_faces" and len(err.value.details["faces"]) == 2

    with pytest.raises(sgc.InvalidImageError) as err:
        sg.detect(b"this is not an image")
    assert (err.value.status, err.value.code) == (400, "invalid_image")
    with pytest.raises(sgc.ImageTooLargeError) as err:
        sg.detect(hostile.png_header_only(20_000, 20_000))
    assert (err.value.status, err.value.code) == (413, "image_too_large") and err.value.details["width"] == 20_000
    with pytest.raises(sgc.InvalidRequestError) as err:
        sg.search(identity_photos["obama"][0], top_k=0)  # the schema allows 1..100
    assert (err.value.status, err.value.code) == (400, "invalid_request") and err.value.details["problems"]

    with pytest.raises(sgc.ConflictError) as err:
        sg.create_person(external_id="errors")
    assert (err.value.status, err.value.code) == (409, "conflict")
    for call in (lambda: sg.get_person("0" * 32), lambda: sg.enrol_face("0" * 32, identity_photos["obama"][0]),
                 lambda: sg.delete_face(pid, "0" * 32), lambda: sg.verify_person(identity_photos["obama"][0], pid)):
        with pytest.raises(sgc.NotFoundError) as err:
            call()
        assert (err.value.status, err.value.code) == (404, "not_found")

    # Credentials: none, unknown, and a tenant key on an admin endpoint.
    with SecureGateClient(sg.base_url) as anonymous, SecureGateClient(sg.base_url, api_key="sg_nope_nope") as unknown, \
            SecureGateClient(sg.base_url, admin_token=created.api_key) as impostor:
        for call in (anonymous.list_persons, unknown.list_persons, anonymous.list_tenants):
            with pytest.raises(sgc.AuthenticationError) as err:
                call()
            assert (err.value.status, err.value.code) == (401, "unauthenticated")
        with pytest.raises(sgc.PermissionDeniedError) as err:
            impostor.list_tenants()
        assert (err.value.status, err.value.code) == (403, "forbidden")


def test_no_answer_is_a_connection_error():
    with SecureGateClient(f"http://127.0.0.1:{free_port()}", timeout=5) as sg:
        with pytest.raises(sgc.SecureGateConnectionError) as err:
            sg.healthz()
    assert err.value.status is None and err.value.code == "connection_error"


def test_overloaded_is_retried_with_bounded_backoff_through_a_transport():
    """Through a scripted transport (a stand-in for a server at capacity, whose Retry-After is in the body): an
    `overloaded` answer is sent again after at least its Retry-After, a bounded number of times and within
    the policy's budget; other errors, and every error with retry=None, are raised at once."""
    script: list[tuple[int, str, float]] = []
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        if not script:
            return httpx.Response(200, json={"status": "ok"})
        status, code, retry_after_s = script.pop(0)
        return httpx.Response(status, headers={"Retry-After": "1"},
                              json={"error": {"code": code, "message": "m", "retry_after_s": retry_after_s}})

    def run(policy, *answers):
        script[:], sent[:] = list(answers), []
        with SecureGateClient("http://sg.test", retry=policy, transport=httpx.MockTransport(handler)) as sg:
            try:
                return sg.healthz(), [b - a for a, b in zip(sent, sent[1:])]
            except SecureGateError as exc:
                return exc, [b - a for a, b in zip(sent, sent[1:])]

    overloaded = (503, "overloaded", 0.2)
    fast = sgc.RetryPolicy(initial_s=0.01)
    answer, waits = run(fast, overloaded, overloaded)
    assert answer == sgc.Health(status="ok") and len(waits) == 2 and min(waits) >= 0.2  # Retry-After honoured
    answer, waits = run(fast, *[overloaded] * 5)
    assert isinstance(answer, sgc.ServiceUnavailableError) and answer.code == "overloaded" and len(waits) == fast.attempts - 1
    answer, waits = run(sgc.RetryPolicy(initial_s=0.01, max_wait_s=0.05), (503, "overloaded", 100.0), overloaded)
    assert answer == sgc.Health(status="ok") and waits[0] < 1  # a wait is at most max_wait_s, whatever the server asks
    answer, waits = run(sgc.RetryPolicy(initial_s=0.01, budget_s=0.3), *[overloaded] * 5)
    assert answer.code == "overloaded" and len(waits) == 1  # a second wait would end past the budget
    for policy, answers in ((fast, [(503, "kms_unavailable", 0.2)]), (fast, [(429, "rate_limited", 0.2)]), (None, [overloaded])):
        answer, waits = run(policy, *answers)
        assert isinstance(answer, SecureGateError) and answer.code == answers[0][1] and waits == []


def test_requests_and_non_json_errors_through_a_transport():
    """What goes on the wire (base64, auth, nulls left out) and how bodies that are not SecureGate's own map."""
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/v1/detect":
            return httpx.Response(200, json={"faces": [], "future_field": 1})
        if request.url.path == "/v1/persons" and request.method == "GET":
            return httpx.Response(502, text="<html>bad gateway</html>")
        if request.url.path == "/v1/persons":
            return httpx.Response(429, headers={"Retry-After": "2"},
                                  json={"error": {"code": "rate_limited", "message": "slow down", "retry_after_s": 1.5}})
        if request.url.path == "/v1/healthz":
            return httpx.Response(429, headers={"Retry-After": "3"}, text="slow down")
        return httpx.Response(404, json={"detail": "Not Found"})

    with SecureGateClient("http://sg.test/", api_key="sg_a_b", transport=httpx.MockTransport(handler)) as sg:
        assert sg.detect(b"\x89PNG fake") == []
        with pytest.raises(sgc.ServiceUnavailableError) as err:
            sg.list_persons(cursor=None)
        assert (err.value.status, err.value.code) == (502, "unavailable") and "bad gateway" in err.value.message
        with pytest.raises(sgc.NotFoundError) as err:
            sg.get_person("a/b")
        assert err.value.code == "not_found" and err.value.details == {"detail": "Not Found"}
        with pytest.raises(sgc.RateLimitedError) as err:
            sg.create_person(external_id="x")
        assert (err.value.status, err.value.code, err.value.retry_after_s) == (429, "rate_limited", 1.5)
        with pytest.raises(sgc.RateLimitedError) as err:
            sg.healthz()
        assert (err.value.code, err.value.retry_after_s) == ("rate_limited", 3.0)
    detect, persons, person, *_ = sent
    # The raw form by default: the image is the body, max_faces=None left out of the query string.
    assert (detect.content, detect.headers["content-type"], dict(detect.url.params)) == (
        b"\x89PNG fake", "application/octet-stream", {})
    assert "authorization" not in detect.headers  # stateless: no key sent
    assert persons.headers["authorization"] == "Bearer sg_a_b" and dict(persons.url.params) == {"limit": "50"}
    assert person.url.raw_path == b"/v1/persons/a%2Fb"  # an id is one path segment, whatever it holds
    with pytest.raises(TypeError):
        client_encoding.image_b64(12345)
    sent.clear()
    with SecureGateClient("http://sg.test/", api_key="sg_a_b", transport=httpx.MockTransport(handler), raw_images=False) as sg:
        sg.detect(b"\x89PNG fake")
        with pytest.raises(sgc.NotFoundError):  # the stand-in server answers 404 there: the request is what counts
            sg.search(b"\x89PNG fake", top_k=3)
    detect, search = sent
    assert json.loads(detect.content) == {"image": base64.b64encode(b"\x89PNG fake").decode()}  # max_faces=None left out
    assert json.loads(search.content) == {"image": base64.b64encode(b"\x89PNG fake").decode(), "top_k": 3}


def test_every_error_code_of_the_api_has_its_exception():
    """The client's code table covers every code of securegate/errors.py, with a class that agrees with the
    code's status: a code added on the server without its client class fails here."""
    api_errors = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.ApiError)]
    assert len(api_errors) >= 20
    for cls in api_errors:
        assert cls.code in client_errors._BY_CODE, f"{cls.__name__} ({cls.code}) has no client exception"
        exc = client_errors.error_from_response(httpx.Response(cls.status, json=cls("m", field="image").body()))
        assert (exc.status, exc.code, exc.message, exc.details) == (cls.status, cls.code, "m", {"field": "image"})
        assert type(exc) is client_errors._BY_CODE[cls.code] and isinstance(exc, client_errors._BY_STATUS[cls.status][1]), cls


def test_answers_are_the_api_response_models():
    """One definition per API type: whatever a client method returns is a class of securegate/schemas/ or
    securegate/stream_schemas.py, the one the server validates its answers with; the client declares none of
    its own."""
    returned = set()
    for name, method in vars(sgc.SecureGateClient).items():
        if callable(method) and not name.startswith("_"):
            stack = [typing.get_type_hints(method)["return"]]
            while stack:
                hint = stack.pop()
                stack.extend(typing.get_args(hint))
                if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
                    returned.add(hint)
    assert len(returned) >= 30, returned
    assert all(m.__module__.startswith("securegate.schemas.") or m.__module__ == "securegate.stream_schemas"
               for m in returned), returned
    assert all(getattr(sgc, m.__name__) is m and m.__name__ in sgc.__all__ for m in returned)  # under the API's name
    client_modules = {"securegate.client", "securegate.client_errors", "securegate.client_events", "securegate.client_http",
                      "securegate.client_retry"}
    declared = [v for v in vars(sgc).values() if isinstance(v, type) and v.__module__ in client_modules]
    assert declared and not [v for v in declared if issubclass(v, pydantic.BaseModel)], declared

    # An answer that does not match its schema is an error, not a half-filled object.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"faces": [{"bbox": "nope"}]}))
    with SecureGateClient("http://sg.test", transport=transport) as sg:
        with pytest.raises(SecureGateError) as err:
            sg.detect(b"image")
    assert (err.value.status, err.value.code) == (200, "invalid_response") and "bbox" in err.value.message


def test_admin_tenants_and_keys(app, admin, identity_photos):
    created = admin.create_tenant("client-admin")
    tid = created.tenant_id
    assert tid in [t.tenant_id for t in admin.list_tenants()]
    view = admin.get_tenant(tid)
    assert isinstance(view, sgc.TenantView) and view.name == "client-admin" and view.model.dim == 128
    updated = admin.update_tenant(tid, {"default_threshold": 0.5, "quality": {"min_face_px": 20}})
    assert updated.settings["default_threshold"] == 0.5 and updated.settings["quality"]["min_face_px"] == 20
    with pytest.raises(sgc.InvalidRequestError) as err:
        admin.update_tenant(tid, {"match_on": "nonsense"})
    assert (err.value.status, err.value.code) == (400, "invalid_request")

    with SecureGateClient(app[1], api_key=created.api_key) as old:
        pid = old.create_person(external_id="alice").person_id
        old.enrol_face(pid, identity_photos["obama"][0])

        rotation = admin.rotate_tenant_key(tid)
        assert isinstance(rotation, sgc.KeyRotation) and rotation.tenant_id == tid and rotation.version >= 2
        deadline = time.monotonic() + 60
        while True:
            status = admin.key_status()
            if status.rotations[tid].state == "done" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert isinstance(status, sgc.KeyStatus) and status.rotations[tid].state == "done"
        assert status.tenants[tid]["versions"] == [rotation.version] and status.tenant_count >= 2
        assert status.cache.hits + status.cache.misses > 0  # the enrolment above needed the tenant's data key

        root = admin.rotate_root_key()
        assert isinstance(root, sgc.RootKeyRotation) and root.root_id != root.previous_root_id
        assert admin.key_status().root_id == root.root_id

        new_key = admin.rotate_api_key(tid).api_key
        with pytest.raises(SecureGateError) as err:  # the old key is revoked at once
            old.list_persons()
        assert isinstance(err.value, sgc.AuthenticationError)
        assert (err.value.status, err.value.code) == (401, "unauthenticated")

    with SecureGateClient(app[1], api_key=new_key) as new:
        assert new.search(identity_photos["obama"][1]).faces[0].matches[0].external_id == "alice"  # re-encrypted, readable

    admin.delete_tenant(tid)
    with pytest.raises(sgc.NotFoundError) as err:
        admin.get_tenant(tid)
    assert (err.value.status, err.value.code) == (404, "not_found")
    with pytest.raises(sgc.NotFoundError):
        admin.delete_tenant(tid)


def test_admin_keys_and_audit_verification(app, admin, tenant):
    """A scoped admin key made, listed, used and revoked through the client; the org audit read and paged;
    the tenant's and the org's audit chains verified intact."""
    created, sg = tenant
    key = admin.create_admin_key("client-auditor", ["audit:read", "tenants:read"])
    assert isinstance(key, sgc.AdminKeyCreated) and key.admin_key.startswith("sgadmin_client-auditor_")
    assert key.admin_key not in repr(key) and sorted(key.scopes) == ["audit:read", "tenants:read"]
    listed = {k.name: k for k in admin.list_admin_keys().admin_keys}
    assert listed["client-auditor"].revoked_at is None and not hasattr(listed["client-auditor"], "admin_key")

    with SecureGateClient(app[1], admin_token=key.admin_key) as auditor:
        page = auditor.org_audit(limit=1000)
        assert isinstance(page, sgc.OrgAuditPage) and all(isinstance(e, sgc.OrgAuditEvent) for e in page.events)
        made = [e for e in page.events if e.action == "admin_key.create" and e.details.get("name") == "client-auditor"]
        assert len(made) == 1 and made[0].outcome == "ok"
        assert [e.seq for e in auditor.iter_org_audit(page_size=2)][:len(page.events)] == [e.seq for e in page.events]
        for verification in (auditor.admin_verify_audit(), auditor.admin_verify_audit(tenant_id=created.tenant_id)):
            assert isinstance(verification, sgc.AuditVerification) and verification.intact, verification
            assert verification.entries > 0 and verification.first_bad_seq is None
        with pytest.raises(sgc.PermissionDeniedError) as err:  # a scope it does not hold
            auditor.create_tenant("not-allowed")
        assert (err.value.status, err.value.code) == (403, "forbidden")

        revoked = admin.revoke_admin_key("client-auditor")
        assert isinstance(revoked, sgc.AdminKeyView) and revoked.revoked_at is not None
        with pytest.raises(sgc.PermissionDeniedError):
            auditor.org_audit()
    with pytest.raises(sgc.ConflictError):  # names are never reused
        admin.create_admin_key("client-auditor", ["audit:read"])

    own = sg.verify_audit()
    assert isinstance(own, sgc.AuditVerification) and own.intact and own.entries > 0 and own.reason is None


def test_readme_example_runs(app, admin, identity_photos, tmp_path, monkeypatch):
    snippet = doc_snippet("http-client-example")
    created = admin.create_tenant("docs-example")
    for i, photo in enumerate(identity_photos["obama"][:2], start=1):
        shutil.copy(photo, tmp_path / f"alice_{i}.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECUREGATE_URL", app[1])
    monkeypatch.setenv("SECUREGATE_API_KEY", created.api_key)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "README.md", "exec"), {"__name__": "__docs__"})
    assert out.getvalue().split("\n")[:3] == ["True", "alice", "400 invalid_image"], out.getvalue()
    admin.delete_tenant(created.tenant_id)
