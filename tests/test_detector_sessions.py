"""The Detector deployment's two CPU sessions: a lone image runs on `detector.idle_threads` threads, images that
overlap on the 1-thread sessions, and both give the same faces. The deployment class runs here without Serve
(its constructor and `detect` are plain Python); the models and photos are the real ones."""

import asyncio

import numpy as np
import pytest

from deployments.detector import Detector
from securegate.settings import Settings


@pytest.fixture(scope="module")
def detector(models_dir, tmp_path_factory):
    settings = Settings.from_args({"models": str(models_dir), "data_dir": str(tmp_path_factory.mktemp("data"))})
    return Detector.func_or_class(settings.model_dump())


def _sessions_used(detector, run):
    """Which of the replica's sessions served the images of `run()` (recorded around the real calls)."""
    used = []
    for name in ("model", "idle_model"):
        model = getattr(detector, name)
        real = model.detect

        def recording(image, max_faces=0, _real=real, _name=name):
            used.append(_name)
            return _real(image, max_faces=max_faces)

        model.detect = recording
    try:
        return run(), used
    finally:
        for name in ("model", "idle_model"):
            del getattr(detector, name).detect


def test_lone_image_runs_on_the_wide_session_and_overlapping_ones_do_not(detector, identity_photos):
    assert detector.idle_model is not detector.model
    photo = identity_photos["obama"][0].read_bytes()
    faces, used = _sessions_used(detector, lambda: asyncio.run(detector.detect(photo)))
    assert used == ["idle_model"] and len(faces) == 1

    async def four_at_once():
        return await asyncio.gather(*(detector.detect(photo) for _ in range(4)))

    results, used = _sessions_used(detector, lambda: asyncio.run(four_at_once()))
    assert len(used) == 4 and used.count("model") >= 3  # at most the first one found the replica idle
    assert all(len(r) == 1 for r in results)


def test_both_sessions_find_the_same_faces(detector, manifest):
    import cv2

    for row in manifest[:6]:
        image = cv2.imread(str(row["file"]))
        wide, narrow = detector.idle_model.detect(image), detector.model.detect(image)
        assert len(wide) == len(narrow)
        for a, b in zip(wide, narrow):
            np.testing.assert_allclose(a.bbox, b.bbox, atol=0.05)
            assert abs(a.score - b.score) < 1e-4
            assert np.abs(a.crop.astype(int) - b.crop.astype(int)).max() <= 2


def test_idle_threads_off_keeps_one_session(models_dir, tmp_path):
    settings = Settings.from_args({"models": str(models_dir), "data_dir": str(tmp_path),
                                   "detector": {"idle_threads": None}})
    detector = Detector.func_or_class(settings.model_dump())
    assert detector.idle_model is detector.model
