"""What a stolen copy of the data dir reveals (issue 17 §1): nothing a tenant gave us, and no enrolled face.

The real application (session fixture) stores a tenant's persons with distinctive external ids and metadata,
their faces, a camera whose URL carries credentials and a webhook whose URL carries a token; the content key
is rotated (persons re-sealed and re-indexed). Then every file under the data dir is copied as an attacker
without the KMS/HSM would copy it: all of it, -wal and -shm included, except the `local` provider's root key
(keys/root.key). The copy is searched as raw bytes for:

- every external id, metadata key and value, the stream's and the webhook's credentials, in UTF-8, UTF-16
  (both byte orders), JSON-escaped and percent-encoded forms;
- every enrolled face's embedding and a "not this person" rejection's (as /v1/embed returns them): its exact float32 bytes, and, since a stored
  copy need not be bit-identical to a fresh computation, any run of 128 float32s at any byte offset whose
  cosine with it exceeds 0.9 (a positive control shows the scan finds a noisy copy buried in random bytes);
- every enrolled face's aligned crop (the tenant keeps enrolment photos, so the crops are stored, sealed):
  any 64-byte run of its raw pixels that is not near-uniform (a positive control shows the scan finds one).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from ray import serve

EXTERNAL_IDS = ["emp-Qx7v-Ågot-Quintrell-4417", "emp-Zr2m-Łukasz-Wędrowny-9930", "emp-Kp5s-Ngozi-Adebayo-2208"]
METADATA = [{"full_name": "Ågot Quintrell-Varga", "badge_serial": "BDG-77Q1-secret", "salary_band": "band-Xq-913377"},
            {"full_name": "Łukasz Wędrowny", "diagnosis_note": "allergic-to-penicillin-Vq8"},
            {"full_name": "Ngozi Adebayo", "home_address": "12 Rue des Jonquilles, Lyon-Zp41"}]
STREAM_USER, STREAM_SECRET = "camuser-Hk3", "s3cr3t-Cam-Pw-7781"
STREAM_URL = f"rtsp://{STREAM_USER}:{STREAM_SECRET}@127.0.0.1:1/lobby-Rq9"
STREAM_NAME = "Office of Ågot Quintrell, 4th floor"
WEBHOOK_SECRET = "hookpass-Vb6-5521"
WEBHOOK_URL = f"https://hookuser-Tz4:{WEBHOOK_SECRET}@127.0.0.1:1/hook?token=tok-Q8Z-webhook"
MIN_COSINE = 0.9


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def forms(value: str) -> list[bytes]:
    """The byte forms a clear string could take in a file."""
    return [value.encode("utf-8"), value.encode("utf-16-le"), value.encode("utf-16-be"),
            json.dumps(value).encode("ascii")[1:-1], quote(value, safe="").encode("ascii")]


def needles() -> list[str]:
    values = [*EXTERNAL_IDS, STREAM_NAME, STREAM_SECRET, f"{STREAM_USER}:{STREAM_SECRET}", WEBHOOK_SECRET, "tok-Q8Z-webhook"]
    for metadata in METADATA:
        for key, value in metadata.items():
            values += [key, value]
    return values


def best_cosine(raw: bytes, vector: np.ndarray) -> float:
    """The highest cosine between `vector` and any run of len(vector) little-endian float32s in `raw`, at every
    byte offset (sliding dot products and window norms, per 4-byte alignment)."""
    unit = vector.astype(np.float64) / np.linalg.norm(vector)
    d, best = len(unit), -1.0
    for shift in range(4):
        n = (len(raw) - shift) // 4
        if n < d:
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # garbage bytes are NaNs and infinities: zeroed next
            x = np.nan_to_num(np.frombuffer(raw, "<f4", count=n, offset=shift).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        x[np.abs(x) > 1e3] = 0.0  # garbage bytes read as huge floats: no embedding component is that large
        dots = np.correlate(x, unit, mode="valid")
        squares = np.concatenate([[0.0], np.cumsum(x * x)])
        norms = np.sqrt(np.maximum(squares[d:] - squares[:-d], 0.0))
        cosines = np.where(norms > 1e-3, dots / np.maximum(norms, 1e-3), 0.0)
        best = max(best, float(cosines.max()))
    return best


def crop_runs(crop: np.ndarray, size: int = 64) -> list[bytes]:
    """64-byte runs of a crop's raw pixels with at least 24 distinct byte values: a uniform run (the black border
    norm_crop pads with) could be in any file by chance."""
    raw = np.ascontiguousarray(crop, np.uint8).tobytes()
    return [run for k in range(0, len(raw) - size, size) if len(set(run := raw[k:k + size])) >= 24]


def aligned_crops(models_dir: Path, photos: list[Path]) -> list[np.ndarray]:
    """The crops the Detector deployment computes for these photos (same pack, same settings: deterministic)."""
    import cv2

    from vision.detector import FaceDetector
    from vision.packs import load_pack

    detector = FaceDetector(load_pack(models_dir), ["CPUExecutionProvider"])
    return [max(detector.detect(cv2.imread(str(p))), key=lambda f: f.area).crop for p in photos]


def test_the_crop_scan_finds_a_raw_crop_in_random_bytes(models_dir, identity_photos):
    (crop,) = aligned_crops(models_dir, [next(iter(identity_photos.values()))[0]])
    runs = crop_runs(crop)
    assert len(runs) > 100
    blob = os.urandom(40_000) + crop.tobytes()[5_000:5_500] + os.urandom(40_000)
    assert any(run in blob for run in runs) and not any(run in os.urandom(80_000) for run in runs)


def test_the_embedding_scan_finds_a_noisy_copy_in_random_bytes():
    rng = np.random.default_rng(3)
    vector = rng.standard_normal(128).astype(np.float32)
    noisy = (vector + 0.05 * rng.standard_normal(128)).astype("<f4")
    blob = os.urandom(50_001) + noisy.tobytes() + os.urandom(30_000)
    assert best_cosine(blob, vector) > 0.99
    assert best_cosine(os.urandom(80_000), vector) < MIN_COSINE


@pytest.fixture(scope="module")
def admin(app, data_dir, http) -> dict:
    http.get("/v1/readyz")
    return {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}


def stolen_copy(data_dir: Path, into: Path) -> bytes:
    """Every file under the data dir except the local provider's root key, copied; their bytes, concatenated."""
    copied = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and path.relative_to(data_dir).as_posix() != "keys/root.key":
            target = into / path.relative_to(data_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            copied.append(target)
    names = {p.relative_to(into).as_posix() for p in copied}
    assert any(n.endswith("embeddings.db") for n in names) and "keys/keystore.db" in names, sorted(names)
    assert "keys/root.key" not in names
    return b"".join(p.read_bytes() for p in copied)


def leaks(raw: bytes, embeddings: list[np.ndarray], crops: list[np.ndarray] = ()) -> list[str]:
    found = [f"string {value!r}" for value in needles() if any(form in raw for form in forms(value))]
    for i, crop in enumerate(crops):
        if any(run in raw for run in crop_runs(crop)):
            found.append(f"crop {i}: a 64-byte run of its pixels")
    for i, vector in enumerate(embeddings):
        exact = vector.astype("<f4").tobytes()
        if exact in raw or any(exact[k:k + 32] in raw for k in range(0, len(exact) - 32, 32)):
            found.append(f"embedding {i}: float32 bytes")
        cosine = best_cosine(raw, vector)
        if cosine > MIN_COSINE:
            found.append(f"embedding {i}: a float32 run with cosine {cosine:.3f}")
    return found


def rotate_content_key(http, admin, tenant_id: str) -> None:
    assert http.post(f"/v1/tenants/{tenant_id}/keys/rotate", headers=admin).status_code == 202
    deadline = time.monotonic() + 120
    while (rotation := http.get("/v1/admin/keys/status", headers=admin).json()["rotations"][tenant_id])["state"] != "done":
        assert rotation["state"] == "running" and time.monotonic() < deadline, rotation
        time.sleep(0.2)


def test_a_copy_of_the_data_dir_reveals_nothing_personal(app, http, admin, identity_photos, data_dir, tmp_path, models_dir):
    r = http.post("/v1/tenants", json={"name": "at-rest", "settings": {"keep_enrolment_photos": True}}, headers=admin)
    assert r.status_code == 201, r.text
    tenant_id, auth = r.json()["tenant_id"], {"Authorization": f"Bearer {r.json()['api_key']}"}
    photos = [paths[0] for paths in list(identity_photos.values())[: len(EXTERNAL_IDS)]]
    persons, embeddings = {}, []
    for external_id, metadata, photo in zip(EXTERNAL_IDS, METADATA, photos):
        r = http.post("/v1/persons", json={"external_id": external_id, "metadata": metadata}, headers=auth)
        assert r.status_code == 201, r.text
        persons[external_id] = r.json()["person_id"]
        image = b64(photo.read_bytes())
        assert http.post(f"/v1/persons/{persons[external_id]}/faces", json={"image": image}, headers=auth).status_code == 201
        faces = http.post("/v1/embed", json={"image": image}).json()["faces"]
        embeddings += [np.asarray(face["embedding"], np.float32) for face in faces]
    # A "not this person" rejection is another person's face vector: sealed like a face, re-sealed by rotation.
    rejected = list(identity_photos.values())[len(EXTERNAL_IDS)][0]
    r = http.post(f"/v1/persons/{persons[EXTERNAL_IDS[0]]}/rejections", json={"image": b64(rejected.read_bytes())}, headers=auth)
    assert r.status_code == 201, r.text
    embeddings += [np.asarray(f["embedding"], np.float32) for f in http.post("/v1/embed", json={"image": b64(rejected.read_bytes())}).json()["faces"]]
    crops = aligned_crops(models_dir, photos)
    r = http.post("/v1/streams", json={"name": STREAM_NAME, "url": STREAM_URL, "fps": 1}, headers=auth)
    assert r.status_code == 201, r.text
    stream_id = r.json()["stream_id"]
    shown = http.get(f"/v1/streams/{stream_id}", headers=auth).json()
    assert STREAM_SECRET not in r.text and STREAM_SECRET not in json.dumps(shown) and shown["name"] == STREAM_NAME
    r = http.post("/v1/webhooks", json={"url": WEBHOOK_URL}, headers=auth)
    assert r.status_code == 201, r.text

    try:
        raw = stolen_copy(data_dir, tmp_path / "before-rotation")
        # The copy does hold this tenant's rows: their random ids are in clear (they name no one).
        assert all(person_id.encode() in raw for person_id in persons.values()) and stream_id.encode() in raw
        assert leaks(raw, embeddings, crops) == []
        # The crops are there (sealed): one per face, in the tenant's file.
        with sqlite3.connect(tmp_path / "before-rotation" / "tenants" / tenant_id / "embeddings.db") as db:
            assert db.execute("SELECT count(*) FROM face_crops").fetchone()[0] == len(photos)
            assert db.execute("SELECT count(*) FROM rejections").fetchone()[0] == 1
        rotate_content_key(http, admin, tenant_id)
        assert leaks(stolen_copy(data_dir, tmp_path / "after-rotation"), embeddings, crops) == []
    finally:
        http.delete(f"/v1/streams/{stream_id}", headers=auth)

    # Every read path still answers the values as given, after the rotation re-sealed and re-indexed them.
    listed = http.get("/v1/persons", headers=auth).json()["persons"]
    assert {p["external_id"]: p["metadata"] for p in listed} == dict(zip(EXTERNAL_IDS, METADATA))
    for external_id, metadata in zip(EXTERNAL_IDS, METADATA):
        got = http.get(f"/v1/persons/{persons[external_id]}", headers=auth).json()
        assert (got["external_id"], got["metadata"]) == (external_id, metadata)
    r = http.post("/v1/persons", json={"external_id": EXTERNAL_IDS[1]}, headers=auth)
    assert r.status_code == 409, r.text  # uniqueness through the re-computed blind index
    r = http.post("/v1/search", json={"image": b64(photos[2].read_bytes())}, headers=auth)
    assert r.json()["faces"][0]["matches"][0]["external_id"] == EXTERNAL_IDS[2]
    # The rejection was re-sealed too: a fresh activation (the old key version is retired) still opens it.
    serve.get_deployment_handle("TenantSupervisor", app_name="securegate").evict.remote(tenant_id).result()
    r = http.post("/v1/verify", json={"image": b64(rejected.read_bytes()), "person_id": persons[EXTERNAL_IDS[0]]}, headers=auth)
    assert r.json()["rejected"] is True and r.json()["best_rejection_similarity"] > 0.99, r.text
