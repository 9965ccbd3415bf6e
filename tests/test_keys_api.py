"""Keys through the running application: rotation while serving, crypto-shredding, KMS outage → 503,
and a restart of the whole application that loses nothing."""

import base64
import contextlib
import io
import shutil
import socket
import threading
import time

import pytest

from cli import main as cli
from securegate import errors


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def admin_token(app, data_dir, http):
    http.get("/v1/readyz")
    return (data_dir / "admin_token").read_text().strip()


def tenant_with_faces(http, admin_token, identity_photos, name):
    r = http.post("/v1/tenants", json={"name": name}, headers={"Authorization": f"Bearer {admin_token}"})
    tenant = {"id": r.json()["tenant_id"], "auth": {"Authorization": f"Bearer {r.json()['api_key']}"}}
    persons = {}
    for who, photos in identity_photos.items():
        persons[who] = http.post("/v1/persons", json={"external_id": who}, headers=tenant["auth"]).json()["person_id"]
        assert http.post(f"/v1/persons/{persons[who]}/faces", json={"image": b64(photos[0].read_bytes())},
                         headers=tenant["auth"]).status_code == 201
    return tenant, persons


def run_cli(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    return code, out.getvalue()


def top_match(http, tenant, photo):
    r = http.post("/v1/search", json={"image": b64(photo.read_bytes())}, headers=tenant["auth"])
    assert r.status_code == 200, r.text
    return r.json()["faces"][0]["matches"][0]["external_id"]


def test_content_key_rotation_reencrypts_while_serving(app, http, admin_token, identity_photos):
    from ray import serve

    tenant, persons = tenant_with_faces(http, admin_token, identity_photos, "rotating-cek")
    url = app[1]
    code, out = run_cli("keys", "rotate", "--tenant", tenant["id"], "--url", url, "--admin-token", admin_token)
    assert code == 0 and '"version": 2' in out
    deadline = time.time() + 60
    while True:  # searches keep working during the background re-encryption
        assert top_match(http, tenant, identity_photos["obama"][1]) == "obama"
        code, out = run_cli("keys", "status", "--url", url, "--admin-token", admin_token)
        import json

        status = json.loads(out)
        rotation = status["rotations"][tenant["id"]]
        if rotation["state"] == "done":
            break
        assert rotation["state"] == "running" and time.time() < deadline
        time.sleep(0.2)
    assert status["tenants"][tenant["id"]]["versions"] == [2]  # version 1 retired
    supervisor = serve.get_deployment_handle("TenantSupervisor", app_name="securegate")
    t = supervisor.authenticate.remote(tenant["auth"]["Authorization"][7:]).result()
    assert supervisor.tenant_info.remote(t.tenant_id).result()["key_versions"] == {2: len(persons)}
    # A fresh activation decrypts everything under the new version only.
    supervisor.evict.remote(tenant["id"]).result()
    assert top_match(http, tenant, identity_photos["biden"][1]) == "biden"


def test_root_rotation_rewraps_tenant_keys(app, http, admin_token, identity_photos):
    from ray import serve

    tenant, _ = tenant_with_faces(http, admin_token, identity_photos, "rotating-root")
    before = json_status(app, admin_token)["root_id"]
    code, out = run_cli("keys", "rotate", "--root", "--url", app[1], "--admin-token", admin_token)
    assert code == 0
    assert json_status(app, admin_token)["root_id"] != before
    serve.get_deployment_handle("TenantSupervisor", app_name="securegate").evict.remote(tenant["id"]).result()
    assert top_match(http, tenant, identity_photos["kit_harington"][1]) == "kit_harington"


def json_status(app, admin_token) -> dict:
    import json

    code, out = run_cli("keys", "status", "--url", app[1], "--admin-token", admin_token)
    assert code == 0
    return json.loads(out)


def test_deleted_tenant_is_crypto_shredded(app, http, admin_token, identity_photos, data_dir, tmp_path):
    """A copy of the tenant's DB taken before deletion can no longer be decrypted: its keys are gone."""
    from ray import serve

    from tenancy.actors import TenantShard

    tenant, _ = tenant_with_faces(http, admin_token, identity_photos, "shredded")
    keys = serve.get_deployment_handle("KeyService", app_name="securegate")
    assert keys.data_key.remote(tenant["id"]).result().version == 1
    stolen = tmp_path / "stolen" / "tenants" / tenant["id"]
    shutil.copytree(data_dir / "tenants" / tenant["id"], stolen)
    assert http.delete(f"/v1/tenants/{tenant['id']}", headers={"Authorization": f"Bearer {admin_token}"}).status_code == 204
    with pytest.raises(Exception) as info:
        keys.data_key.remote(tenant["id"]).result()
    assert isinstance(errors.root_cause(info.value), errors.NotFound)

    def data_key(version, purpose="embeddings"):
        return keys.data_key.remote(tenant["id"], purpose, version).result()

    stolen_copy = TenantShard(tenant["id"], str(tmp_path / "stolen"), "mobilefacenet_arcface_w128/128", 128, data_key)
    with pytest.raises(Exception) as info:
        stolen_copy.activate()
    assert isinstance(errors.root_cause(info.value), errors.NotFound)


def test_app_restart_loses_nothing(app, http, admin_token, identity_photos, models_dir, data_dir):
    from ray import serve

    from graph import bind_app

    tenant, persons = tenant_with_faces(http, admin_token, identity_photos, "restarted")
    serve.delete("securegate")
    serve.run(bind_app({"models": str(models_dir), "data_dir": str(data_dir)}), name="securegate", route_prefix="/")
    assert top_match(http, tenant, identity_photos["rose_leslie"][1]) == "rose_leslie"
    listed = http.get("/v1/persons", headers=tenant["auth"]).json()["persons"]
    assert {p["person_id"] for p in listed} == set(persons.values())


def test_key_service_macs_are_bound_to_purpose_and_tenant(app):
    """The KeyService deployment MACs checkpoints with the provider's key; a tag verifies only where it was made."""
    from ray import serve

    keys = serve.get_deployment_handle("KeyService", app_name="securegate")
    message = b"securegate/chain-checkpoint seq=7"
    tag = keys.mac.remote(message, "audit-checkpoint", "tenant-a").result()
    assert isinstance(tag, bytes)
    assert keys.verify_mac.remote(message, tag, "audit-checkpoint", "tenant-a").result() is True
    assert keys.verify_mac.remote(message + b"!", tag, "audit-checkpoint", "tenant-a").result() is False
    assert keys.verify_mac.remote(message, tag, "audit-checkpoint", "tenant-b").result() is False
    assert keys.verify_mac.remote(message, tag, "erasure-receipt", "tenant-a").result() is False
    org_tag = keys.mac.remote(message, "erasure-receipt").result()
    assert keys.verify_mac.remote(message, org_tag, "erasure-receipt").result() is True
    assert keys.verify_mac.remote(message, org_tag, "erasure-receipt", "tenant-a").result() is False


# ---- KMS outage -------------------------------------------------------------------------------------------
class CuttableProxy:
    """A TCP forwarder to the KMS endpoint that the test can cut: a real network outage, on loopback."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = threading.Event()
        self.up.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while self.up.is_set() and (data := src.recv(65536)):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self):
        self.listener.close()


@pytest.fixture(scope="module")
def aws_app(app, serve_port, models_dir, tmp_path_factory):
    """A second application whose KeyService uses AWS KMS (a moto server) through a cuttable proxy: its own
    KeyService, TenantSupervisor (over its own data dir) and Ingress; the session app's Detector and Embedder are
    borrowed (they hold no keys), so the models are not loaded a second time."""
    import boto3
    from moto.server import ThreadedMotoServer
    from ray import serve

    from deployments.ingress import Ingress
    from deployments.keys import KeyService
    from deployments.tenants import TenantSupervisor
    from securegate.settings import Settings

    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, moto_port = server.get_host_and_port()
    kms_client = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
    key_id = kms_client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    kms_client.create_alias(AliasName="alias/securegate-outage", TargetKeyId=key_id)
    # The erasure receipts' signing key, as an operator creates it: ECC P-256, sign/verify only, behind `<alias>-sign`.
    sign_id = kms_client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    kms_client.create_alias(AliasName="alias/securegate-outage-sign", TargetKeyId=sign_id)
    proxy = CuttableProxy(moto_port)
    data_dir = tmp_path_factory.mktemp("aws-app")
    args = {
        "models": str(models_dir), "data_dir": str(data_dir),
        # No key cache: every data key goes to KMS, so the outage is felt at once.
        "keys": {"provider": "aws", "cache_ttl_s": 0, "options": {
            "key_alias": "alias/securegate-outage", "region": "us-east-1",
            "endpoint_url": f"http://127.0.0.1:{proxy.port}", "max_attempts": 2,
            "connect_timeout_s": 1.0, "read_timeout_s": 2.0}},
    }
    settings = Settings.from_args(args).model_dump()
    keys = KeyService.options(ray_actor_options={"num_cpus": 0.25, "runtime_env": {"env_vars": creds}}).bind(settings)
    borrowed = {name: serve.get_deployment_handle(name, "securegate") for name in ("Detector", "Embedder")}
    serve.run(Ingress.bind(settings, borrowed["Detector"], borrowed["Embedder"], TenantSupervisor.bind(settings, keys), keys),
              name="securegate-aws", route_prefix="/aws")
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}/aws", timeout=120) as client:
        client.get("/v1/readyz")
        yield client, proxy, data_dir
    serve.delete("securegate-aws")
    proxy.close()
    server.stop()


def test_kms_outage_is_a_503_and_writes_nothing(aws_app, identity_photos):
    import apsw

    client, proxy, data_dir = aws_app
    admin = {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}
    r = client.post("/v1/tenants", json={"name": "aws-tenant"}, headers=admin)
    assert r.status_code == 201, r.text
    tenant_id, auth = r.json()["tenant_id"], {"Authorization": f"Bearer {r.json()['api_key']}"}
    person = client.post("/v1/persons", json={}, headers=auth).json()["person_id"]
    photo = identity_photos["obama"][0].read_bytes()
    assert client.post(f"/v1/persons/{person}/faces", json={"image": b64(photo)}, headers=auth).status_code == 201
    assert client.get("/v1/readyz").status_code == 200

    proxy.up.clear()  # KMS unreachable
    try:
        r = client.post(f"/v1/persons/{person}/faces", json={"image": b64(photo)}, headers=auth)
        assert r.status_code == 503 and r.json()["error"]["code"] == "kms_unavailable", r.text
        r = client.post("/v1/tenants", json={"name": "born-in-outage"}, headers=admin)
        assert r.status_code == 503 and r.json()["error"]["code"] == "kms_unavailable"
        assert client.get("/v1/readyz").status_code == 503
    finally:
        proxy.up.set()

    # Nothing half-written: one acknowledged face, one tenant.
    db = apsw.Connection(str(data_dir / "tenants" / tenant_id / "embeddings.db"))
    assert db.execute("SELECT count(*) FROM faces").fetchone()[0] == 1
    db.close()
    names = [t["name"] for t in client.get("/v1/tenants", headers=admin).json()]
    assert names == ["aws-tenant"]
    assert client.post(f"/v1/persons/{person}/faces", json={"image": b64(photo)}, headers=auth).status_code == 201


def test_an_erasure_receipt_signed_by_aws_kms_verifies_offline(aws_app, identity_photos):
    """Issue 23 §6 with the KeyService on AWS KMS (moto): the receipt is signed by KMS `Sign` with the ECC key, and
    the key published by the service checks it with `cryptography` alone."""
    from tests.test_audit_api import verifies

    client, _, data_dir = aws_app
    admin = {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}
    created = client.post("/v1/tenants", json={"name": "aws-erased"}, headers=admin).json()
    assert client.delete(f"/v1/tenants/{created['tenant_id']}", headers=admin).status_code == 204
    signed = client.get(f"/v1/admin/erasure-receipts/{created['tenant_id']}", headers=admin).json()
    keys = {k["key_id"]: k["public_key_pem"] for k in client.get("/v1/erasure-receipts/keys").json()["keys"]}
    assert signed["signature"]["key_id"].startswith("arn:aws:kms:") and signed["signature"]["key_id"] in keys
    assert verifies(keys[signed["signature"]["key_id"]], signed["signature"]["value"], signed["receipt"])
    assert not verifies(keys[signed["signature"]["key_id"]], signed["signature"]["value"],
                        {**signed["receipt"], "key_ids": []})
