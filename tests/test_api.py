"""The running application over HTTP and through Serve handles, on the real models and photos."""

import asyncio
import base64
import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from tests import hostile
from tests.docs_snippets import doc_snippet

REPO = Path(__file__).resolve().parents[1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_image(http, path, data: bytes, **extra):
    return http.post(path, json={"image": b64(data), **extra})


def test_health_and_readiness(http):
    assert http.get("/v1/healthz").json() == {"status": "ok"}
    ready = http.get("/v1/readyz")
    assert ready.status_code == 200
    assert ready.json()["embedder"]["dim"] == 128


def test_detection_counts_match_the_manifest(http, manifest):
    for row in manifest:
        r = post_image(http, "/v1/detect", row["file"].read_bytes())
        assert r.status_code == 200, (row["file"], r.text)
        faces = r.json()["faces"]
        assert len(faces) == row["faces"], row["file"]
        for face in faces:
            x1, y1, x2, y2 = face["bbox"]
            assert x2 > x1 and y2 > y1 and len(face["landmarks"]) == 5 and 0 < face["score"] <= 1


def test_embed_returns_unit_vectors_of_the_models_dim(http, faces_root):
    r = post_image(http, "/v1/embed", (faces_root / "scenes" / "kit_with_rose.jpg").read_bytes())
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == {"name": "mobilefacenet_arcface_w128", "dim": 128}
    assert len(body["faces"]) == 2
    for face in body["faces"]:
        assert len(face["embedding"]) == 128
        assert abs(np.linalg.norm(face["embedding"]) - 1) < 1e-4


def test_detect_and_embed_take_the_image_raw_as_the_body(http, faces_root, manifest):
    """Raw form (bytes as the body, `max_faces` in the query string) and JSON form answer the same, on real photos."""
    for row in manifest[:4]:
        data = row["file"].read_bytes()
        raw = http.post("/v1/detect", content=data, headers={"content-type": "image/jpeg"})
        assert raw.status_code == 200 and raw.json() == post_image(http, "/v1/detect", data).json(), raw.text
    scene = (faces_root / "scenes" / "kit_with_rose.jpg").read_bytes()
    raw = http.post("/v1/embed", content=scene, params={"max_faces": 1}, headers={"content-type": "application/octet-stream"})
    assert raw.status_code == 200 and len(raw.json()["faces"]) == 1
    assert raw.json() == post_image(http, "/v1/embed", scene, max_faces=1).json()
    r = http.post("/v1/detect", content=scene, headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


def test_openapi_describes_both_upload_forms(http):
    spec = http.get("/openapi.json").json()
    for path, options in (("/v1/detect", {"max_faces"}), ("/v1/embed", {"max_faces"}),
                          ("/v1/search", {"threshold", "top_k", "max_faces"}),
                          ("/v1/persons/{person_id}/faces", {"face_index"})):
        operation = spec["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        assert content["application/json"]["schema"]["properties"]["image"]["type"] == "string"
        assert content["image/jpeg"]["schema"] == content["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}
        assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == options, path
        assert "415" in operation["responses"]


def test_verify_matches_same_identity_and_rejects_others(http, identity_photos):
    photos = [(who, p) for who, ps in identity_photos.items() for p in ps]
    same, different = [], []
    for (who_a, a), (who_b, b) in itertools.combinations(photos, 2):
        r = http.post("/v1/verify", json={"image_a": b64(a.read_bytes()), "image_b": b64(b.read_bytes())})
        assert r.status_code == 200, r.text
        (same if who_a == who_b else different).append((r.json(), a.name, b.name))
    assert same and different
    assert all(v["match"] for v, *_ in same), [x for x in same if not x[0]["match"]]
    assert not any(v["match"] for v, *_ in different), [x for x in different if x[0]["match"]]
    # The default threshold is the pack's measured one, returned with every answer.
    assert {v["threshold"] for v, *_ in same + different} == {0.37}


def test_verify_threshold_per_request(http, identity_photos):
    a, b = identity_photos["obama"][:2]
    r = http.post("/v1/verify", json={"image_a": b64(a.read_bytes()), "image_b": b64(b.read_bytes()), "threshold": 0.999})
    assert r.json()["threshold"] == 0.999 and r.json()["match"] is False


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"image": "!!!not base64!!!"}, 400, "invalid_image"),
        ({"image": ""}, 400, "invalid_image"),
        ({"image": b64(b"definitely not an image")}, 400, "invalid_image"),
        ({"image": b64(hostile.one_pixel())}, 400, "invalid_image"),
        ({"image": 12345}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"image": b64(hostile.faceless_photo())}, 422, "no_face"),
        ({"image": b64(hostile.png_header_only(20000, 20000))}, 413, "image_too_large"),
        ({"image": b64(hostile.decompression_bomb())}, 413, "image_too_large"),
    ],
    ids=["bad-base64", "empty", "not-an-image", "1x1", "wrong-type", "missing", "no-face", "20000x20000", "bomb"],
)
def test_bad_input_gets_its_documented_error(http, body, status, code):
    for path in ("/v1/detect", "/v1/embed"):
        r = http.post(path, json=body)
        assert r.status_code == status, (path, r.text)
        assert r.json()["error"]["code"] == code
        assert r.json()["error"]["message"]


def test_verify_names_the_image_without_a_face(http, identity_photos):
    a = identity_photos["biden"][0]
    r = http.post("/v1/verify", json={"image_a": b64(a.read_bytes()), "image_b": b64(hostile.faceless_photo())})
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "no_face", "message": "no face found in image_b", "field": "image_b"}


def test_body_over_the_limit_is_413(http):
    r = http.post("/v1/detect", content=b"{" + b" " * (21 * 1024 * 1024) + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_invalid_json_is_400(http):
    r = http.post("/v1/detect", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_handle_api_answers_like_http(app, http, identity_photos):
    handle, _ = app
    a, b = identity_photos["rose_leslie"][:2]
    via_handle = handle.verify.remote(a.read_bytes(), b.read_bytes()).result()
    via_http = http.post("/v1/verify", json={"image_a": b64(a.read_bytes()), "image_b": b64(b.read_bytes())}).json()
    assert via_handle == via_http and via_handle["match"]
    faces = handle.detect.remote(a.read_bytes()).result()["faces"]
    assert len(faces) == 1


def test_handle_api_raises_typed_errors(app):
    from securegate import errors

    handle, _ = app
    with pytest.raises(Exception) as info:
        handle.detect.remote(b"garbage").result()
    cause = errors.root_cause(info.value)
    assert isinstance(cause, errors.InvalidImage) and cause.code == "invalid_image"


def test_readme_handle_snippet_runs(app, identity_photos, tmp_path, monkeypatch):
    """The README's Python example, executed as written against the running app."""
    snippet = doc_snippet("handle-example")
    (tmp_path / "alice_1.jpg").write_bytes(identity_photos["obama"][0].read_bytes())
    (tmp_path / "alice_2.jpg").write_bytes(identity_photos["obama"][1].read_bytes())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["result"]["match"] is True


def test_embedder_forms_batches_under_concurrency(app, ray_cluster):
    """64 concurrent single-crop calls: the embedder must form batches larger than one (observed)."""
    from ray import serve

    embedder = serve.get_deployment_handle("Embedder", app_name="securegate")
    embedder.reset_batch_stats.remote().result()
    crops = np.random.default_rng(0).integers(0, 256, (64, 112, 112, 3), dtype=np.uint8)

    async def burst():
        return await asyncio.gather(*(embedder.embed.remote(crops[i : i + 1]) for i in range(64)))

    results = asyncio.run(burst())
    assert all(r.shape == (1, 128) for r in results)
    stats = embedder.batch_stats.remote().result()
    histogram = {int(k): v for k, v in stats["histogram"].items()}
    assert sum(size * n for size, n in histogram.items()) == 64
    assert max(histogram) > 1, histogram
    assert max(histogram) <= stats["max_batch_size"]


def test_reconfigure_changes_the_batching_policy(app):
    """`reconfigure` (what Serve calls with a new user_config) changes max_batch_size without a restart."""
    from ray import serve

    embedder = serve.get_deployment_handle("Embedder", app_name="securegate")
    crops = np.random.default_rng(1).integers(0, 256, (40, 112, 112, 3), dtype=np.uint8)
    # Route to the one replica directly, as Serve's user_config update would.
    embedder.reconfigure.remote({"max_batch_size": 8, "batch_wait_timeout_s": 0.05}).result()
    try:
        embedder.reset_batch_stats.remote().result()
        assert embedder.embed.remote(crops).result().shape == (40, 128)
        stats = embedder.batch_stats.remote().result()
        assert stats["max_batch_size"] == 8
        assert max(int(k) for k in stats["histogram"]) <= 8
    finally:
        embedder.reconfigure.remote({"max_batch_size": 32, "batch_wait_timeout_s": 0.05}).result()


def test_embedder_does_not_wait_its_batch_window_when_idle(app):
    """One call on an idle embedder runs at once: with a 2 s batch window it still answers well inside 2 s
    (it waited the whole window before), and a concurrent burst still forms batches through the window."""
    from ray import serve

    embedder = serve.get_deployment_handle("Embedder", app_name="securegate")
    crops = np.random.default_rng(2).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)
    embedder.reconfigure.remote({"max_batch_size": 32, "batch_wait_timeout_s": 2.0}).result()
    try:
        embedder.embed.remote(crops[:1]).result()  # warm
        started = time.monotonic()
        assert embedder.embed.remote(crops[:1]).result().shape == (1, 128)
        assert time.monotonic() - started < 1.5

        embedder.reset_batch_stats.remote().result()

        async def burst():
            return await asyncio.gather(*(embedder.embed.remote(crops[i : i + 1]) for i in range(8)))

        assert all(r.shape == (1, 128) for r in asyncio.run(burst()))
        histogram = {int(k): v for k, v in embedder.batch_stats.remote().result()["histogram"].items()}
        assert sum(size * n for size, n in histogram.items()) == 8 and max(histogram) > 1, histogram
    finally:
        embedder.reconfigure.remote({"max_batch_size": 32, "batch_wait_timeout_s": 0.05}).result()


@pytest.mark.parametrize("body", [
    {"image_a": "aGk=", "image_b": "aGk=", "person_id": "p"},
    {"image": "aGk=", "image_b": "aGk="},
    {"image_a": "aGk="},
    {"person_id": "p"},
], ids=["pair-plus-person", "mixed", "half-pair", "person-without-image"])
def test_verify_takes_exactly_one_form(http, body):
    r = http.post("/v1/verify", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
