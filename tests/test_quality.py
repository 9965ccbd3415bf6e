"""Face quality signals (vision/quality.py) on real photos, the exposure gate of enrolment through the running
application, and how a camera track decides (streams/tracking.py) from hand-made votes."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from streams.tracking import PER_FRAME_VOTES, Policy, Track
from vision.detector import FaceDetector
from vision.embedder import FaceEmbedder
from vision.packs import load_pack
from vision.quality import EXPOSURE_TARGET, brightness, measure, normalise_exposure
from vision.runtime import onnx_providers


@pytest.fixture(scope="module")
def models(models_dir):
    pack = load_pack(models_dir)
    return FaceDetector(pack, onnx_providers(False)), FaceEmbedder(pack, onnx_providers(False))


def dimmed(image: np.ndarray, light: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * light, 0, 255).astype(np.uint8)


def test_a_dim_face_is_brightened_back_and_recognised_better(models, identity_photos):
    detector, embedder = models
    for photo in identity_photos["obama"][:2] + identity_photos["biden"][:1]:
        image = cv2.imread(str(photo))
        (lit,) = detector.detect(image)
        (dim,) = detector.detect(dimmed(image, 0.4))
        assert brightness(dim.crop) == pytest.approx(0.4 * brightness(lit.crop), rel=0.05)
        restored = normalise_exposure(dim.crop)
        assert brightness(restored) == pytest.approx(min(EXPOSURE_TARGET, 3 * brightness(dim.crop)), rel=0.05)
        reference, raw_dim, fixed = embedder.embed([lit.crop, dim.crop, restored])
        assert float(fixed @ reference) > float(raw_dim @ reference)
    bright = cv2.convertScaleAbs(lit.crop, alpha=1.2 * EXPOSURE_TARGET / brightness(lit.crop))
    assert brightness(bright) > EXPOSURE_TARGET and normalise_exposure(bright) is bright  # never darkened


def test_blur_lowers_sharpness_and_darkness_the_embedding_norm(models, identity_photos):
    """Sharpness follows blur; the embedding norm follows light (for blur alone it is no reliable signal on
    photos: docs/cameras-quality.md)."""
    detector, embedder = models
    for photo in identity_photos["kit_harington"][:1] + identity_photos["obama"][:2]:
        image = cv2.imread(str(photo))
        (sharp,) = detector.detect(image)
        length = int(0.2 * (sharp.bbox[2] - sharp.bbox[0]))
        (blurred,) = detector.detect(cv2.filter2D(image, -1, np.full((1, length), 1 / length, np.float32)))
        (dark,) = detector.detect(dimmed(image, 0.15))
        q_sharp, q_blur = (measure(f.bbox, f.landmarks, f.crop, f.score) for f in (sharp, blurred))
        assert q_blur.sharpness < q_sharp.sharpness / 2
        _, norms = embedder.embed_with_norms([sharp.crop, dark.crop])
        assert norms[1] < 0.8 * norms[0]
    vectors, _ = embedder.embed_with_norms([sharp.crop])
    assert np.allclose(vectors, embedder.embed([sharp.crop]))


def test_enrolment_refuses_an_underexposed_face_with_the_exposure_gate(http, app, data_dir, identity_photos):
    admin = {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}
    r = http.post("/v1/tenants", json={"name": "exposure"}, headers=admin)
    assert r.status_code == 201, r.text
    auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
    person = http.post("/v1/persons", json={"external_id": "obama"}, headers=auth).json()["person_id"]
    image = cv2.imread(str(identity_photos["obama"][0]))
    for light, accepted in ((0.4, True), (0.12, False)):
        jpeg = cv2.imencode(".jpg", dimmed(image, light))[1].tobytes()
        r = http.post(f"/v1/persons/{person}/faces", json={"image": base64.b64encode(jpeg).decode()}, headers=auth)
        if accepted:
            assert r.status_code == 201, r.text
        else:
            assert r.status_code == 422 and r.json()["error"]["code"] == "low_quality", r.text
            assert [reason["gate"] for reason in r.json()["error"]["reasons"]] == ["exposure"]


# ---- a track's decision, from hand-made votes --------------------------------------------------------------
def track(votes, template=None) -> Track:
    t = Track(1, 0.0, 0.0, 0.0, 0.0)
    t.votes = [(p, s, p) for p, s in votes]
    t.template_match = None if template is False else (template[0], template[1], template[0]) if template else (None, None, None)
    return t


def test_a_template_names_a_person_no_single_face_reached():
    t = track([(None, None), (None, None)], template=("p1", 0.41))
    assert t.decide(Policy()) and t.identity == ("person", "p1", "p1") and t.best_similarity == 0.41
    assert (t.decided_by, t.votes_for) == ("template", 0)
    # Per-frame votes alone would have called it unknown at once.
    t = track([(None, None), (None, None)], template=("p1", 0.41))
    assert t.decide(PER_FRAME_VOTES) and t.identity == ("unknown", None, None)


def test_a_track_whose_faces_named_two_people_is_not_decided_by_its_template():
    """It may have switched face mid-way: the votes decide (a strict majority, or unknown at its end)."""
    t = track([("p1", 0.5), ("p2", 0.45)], template=("p1", 0.5))
    assert not t.decide(Policy())
    assert t.decide(Policy(), final=True) and t.identity == ("unknown", None, None)  # a tie at the end names nobody
    assert (t.decided_by, t.votes_for) == ("votes", 0)
    t = track([("p1", 0.5), ("p2", 0.45), ("p2", 0.47)], template=("p1", 0.44))
    assert t.decide(Policy()) and t.identity == ("person", "p2", "p2")


def test_unknown_waits_for_the_template_to_have_its_faces():
    policy = Policy(max_embeddings=4)
    t = track([(None, None), (None, None)])
    assert not t.decide(policy)
    t.votes += [(None, None, None), (None, None, None)]
    assert t.decide(policy) and t.identity == ("unknown", None, None)
    t = track([(None, None), (None, None)])
    assert t.decide(policy, final=True) and t.identity == ("unknown", None, None)


def test_a_track_that_ends_with_one_face_reports_nothing():
    t = track([("p1", 0.6)], template=("p1", 0.6))
    assert not t.decide(Policy(), final=True) and t.identity is None
    assert t.decide(PER_FRAME_VOTES, final=True) and t.identity[0] == "person"  # before: one vote named them


def test_the_template_is_the_quality_weighted_mean_of_unit_vectors():
    t = Track(1, 0.0, 0.0, 0.0, 0.0)
    t.vectors = [np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)]
    t.weights = [3.0, 1.0]
    assert np.allclose(t.template(), np.array([3.0, 1.0]) / np.sqrt(10))
