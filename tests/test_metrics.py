"""Metrics through Ray's Prometheus export: scraped from the metrics port, as an operator would."""

import base64
import time

import httpx

EXPECTED = [
    'ray_securegate_requests_total{',
    'endpoint="search"',
    'outcome="ok"',
    'outcome="no_face"',
    "ray_securegate_request_seconds_bucket",
    "ray_securegate_faces_detected_total",
    "ray_securegate_embed_batch_size_bucket",
    'ray_securegate_search_seconds_bucket',
    'tier="exact"',
    'ray_securegate_kms_calls_total',
    'operation="data_key"',
    "ray_securegate_active_tenants",
    "ray_securegate_index_memory_bytes",
]


def test_metrics_are_exported(app, http, data_dir, identity_photos, metrics_port):
    from tests.hostile import faceless_photo

    admin = {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}
    created = http.post("/v1/tenants", json={"name": "metered"}, headers=admin).json()
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    person = http.post("/v1/persons", json={}, headers=auth).json()["person_id"]
    photo = base64.b64encode(identity_photos["obama"][0].read_bytes()).decode()
    assert http.post(f"/v1/persons/{person}/faces", json={"image": photo}, headers=auth).status_code == 201
    assert http.post("/v1/search", json={"image": photo}, headers=auth).status_code == 200
    blank = base64.b64encode(faceless_photo()).decode()
    assert http.post("/v1/search", json={"image": blank}, headers=auth).status_code == 422

    deadline = time.time() + 90  # Ray's agent exports on an interval
    tenant_label = f'tenant="{created["tenant_id"]}"'
    missing = EXPECTED + [tenant_label]
    while missing and time.time() < deadline:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        securegate = "\n".join(line for line in text.splitlines() if "securegate" in line)
        missing = [m for m in EXPECTED if m not in securegate]
        if not any("requests_total" in line and tenant_label in line for line in securegate.splitlines()):
            missing.append(tenant_label)  # requests are labelled with the tenant that made them
        time.sleep(2)
    assert not missing, missing
