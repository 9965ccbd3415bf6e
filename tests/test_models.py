"""Model packs and inference, without Ray: the same classes the deployments run."""

import logging
import os
import socket

import cv2
import numpy as np
import pytest

from vision import packs
from vision.detector import FaceDetector, enlarged, shrunk
from vision.embedder import FaceEmbedder, _dynamic_batch_copy
from vision.packs import ModelPackError, load_pack
from vision.runtime import onnx_providers

from tests.model_packs import LANDMARK_AND_ATTRIBUTE, PACKS, build_pack, synthetic_standin_model


@pytest.fixture(scope="module")
def pack(models_dir):
    return load_pack(models_dir)


@pytest.fixture(scope="module")
def batch1_pack(models_dir, tmp_path_factory):
    """A pack whose recognizer is fixed at batch 1, as found in the wild."""
    d = tmp_path_factory.mktemp("batch1-pack")
    os.symlink(models_dir / "scrfd_2.5g_bnkps.onnx", d / "scrfd_2.5g_bnkps.onnx")
    os.symlink(models_dir / "mobilefacenet_arcface_w128_batch1.onnx", d / "mobilefacenet_arcface_w128_batch1.onnx")
    return load_pack(d)


def test_pack_is_read_from_the_graphs(pack, models_dir):
    assert pack.detector_path.name == "scrfd_2.5g_bnkps.onnx"
    # Two recognizers in the shared pack: the dynamic-batch one is preferred.
    assert pack.recognizer_path.name == "mobilefacenet_arcface_w128.onnx"
    assert pack.recognizer_fixed_batch is None
    assert pack.embedding_dim == 128 and pack.recognizer_input_size == 112
    assert pack.name == models_dir.name


def test_batch1_pack_is_recognised(batch1_pack):
    assert batch1_pack.recognizer_fixed_batch == 1
    assert batch1_pack.embedding_dim == 128


def test_explicit_recognizer_choice(models_dir):
    chosen = load_pack(models_dir, recognizer="mobilefacenet_arcface_w128_batch1")
    assert chosen.recognizer_fixed_batch == 1
    with pytest.raises(ModelPackError, match="no recognizer named"):
        load_pack(models_dir, recognizer="glintr100")


def test_directory_without_models_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ModelPackError, match="no face detector"):
        load_pack(tmp_path)
    with pytest.raises(ModelPackError, match="does not exist"):
        load_pack(tmp_path / "missing")


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on: the stand-in for an unreachable model zoo."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failed_download_is_one_line_with_the_fixes(tmp_path, monkeypatch):
    """No SECUREGATE_MODELS, no antelopev2 on disk, and insightface's own download fails (its URL points at
    a closed local port, a stand-in for the zoo being unreachable): one line naming where to put the
    files and buffalo_l as the alternative."""
    import insightface.utils.storage as storage

    monkeypatch.delenv("SECUREGATE_MODELS", raising=False)
    monkeypatch.setattr(packs, "INSIGHTFACE_ROOT", tmp_path)
    port = closed_port()
    monkeypatch.setattr(storage, "MODEL_ZOO_RELEASE_DOWNLOAD_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(ModelPackError) as err:
        packs.resolve_pack(None)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"could not download model pack antelopev2 from http://127.0.0.1:{port}/antelopev2.zip "
                              "(ConnectionRefusedError: [Errno 111] Connection refused)")
    assert str(tmp_path / "models" / "antelopev2") in message and "SECUREGATE_MODELS=buffalo_l" in message


def test_env_var_points_at_the_pack(models_dir, monkeypatch):
    monkeypatch.setenv("SECUREGATE_MODELS", str(models_dir))
    assert packs.resolve_pack(None).embedding_dim == 128


@pytest.fixture(scope="module")
def detector(pack):
    return FaceDetector(pack, onnx_providers(False), threads=2)


@pytest.fixture(scope="module")
def embedder(pack):
    return FaceEmbedder(pack, onnx_providers(False), threads=2)


def test_parity_with_insightface_reference(pack, embedder, manifest, tmp_path):
    """Our embeddings equal insightface's FaceAnalysis on the same models, within 1e-4, on every photo, when
    detection runs on insightface's square input (detector.fit_aspect off)."""
    detector = FaceDetector(pack, onnx_providers(False), threads=2, fit_aspect=False)
    from insightface.app import FaceAnalysis

    ref_dir = tmp_path / "ref-pack"
    ref_dir.mkdir()
    for p in (pack.detector_path, pack.recognizer_path):
        os.symlink(p, ref_dir / p.name)
    reference = FaceAnalysis(name=str(ref_dir), allowed_modules=["detection", "recognition"], providers=["CPUExecutionProvider"])
    reference.prepare(ctx_id=0, det_size=(640, 640))
    compared = 0
    for row in manifest:
        img = cv2.imread(str(row["file"]))
        ref_faces = reference.get(img)
        ours = detector.detect(img)
        assert len(ours) == len(ref_faces) == row["faces"], row["file"]
        vectors = embedder.embed([f.crop for f in ours])
        for face, ref in zip(sorted(zip(ours, vectors), key=lambda fv: fv[0].bbox), sorted(ref_faces, key=lambda f: tuple(f.bbox))):
            np.testing.assert_allclose(face[0].bbox, ref.bbox, atol=1e-3)
            np.testing.assert_allclose(face[1], ref.normed_embedding, atol=1e-4)
            compared += 1
    assert compared == sum(r["faces"] for r in manifest)


def test_aspect_fitted_detection_finds_the_same_faces_as_the_square_input(pack, detector, embedder, manifest):
    """The shipped default runs SCRFD at each photo's own aspect ratio (no padding to a square): the same faces on
    every photo, boxes within 2 px, embeddings of the aligned crops at cosine >= 0.995 (measured min 0.9987)."""
    square = FaceDetector(pack, onnx_providers(False), threads=2, fit_aspect=False)
    assert detector._fits_aspect and not square._fits_aspect
    sizes = set()
    for row in manifest:
        img = cv2.imread(str(row["file"]))
        sizes.add(detector._input_size(img.shape[1], img.shape[0]))
        fitted, padded = (sorted(d.detect(img), key=lambda f: f.bbox) for d in (detector, square))
        assert len(fitted) == len(padded) == row["faces"], row["file"]
        for a, b in zip(fitted, padded):
            np.testing.assert_allclose(a.bbox, b.bbox, atol=2.0)
        cosines = (embedder.embed([f.crop for f in fitted]) * embedder.embed([f.crop for f in padded])).sum(axis=1)
        assert cosines.min() >= 0.995, (row["file"], cosines)
    assert len(sizes) > 3 and (640, 640) in sizes or len(sizes) > 4  # the photos really span several ratios


def test_a_frame_shrunk_to_the_detector_input_gives_the_full_frames_faces(pack, embedder, manifest):
    """Camera workers ship their frame to the Detector shrunk to SCRFD's input side (streams.det_size, 320) and
    align the faces from the full frame (`enlarged`): the same faces, boxes and landmarks within 0.01 px, and
    the same embeddings (cosine >= 0.99999) as detecting on the full frame, on every photo. A size insightface
    would derive again a pixel short (1154x768 → 212 → 211 wide) is sent whole instead: measured, such a pixel
    moved a face's landmarks 1.7 px and its embedding to cosine 0.983."""
    frames = FaceDetector(pack, onnx_providers(False), det_size=320, threads=2)
    compared, worst, sent_whole = 0, 1.0, 0
    for row in manifest:
        img = cv2.imread(str(row["file"]))
        small, scale = shrunk(img, 320)
        if scale == 1:
            assert small is img
            sent_whole += 1
        else:
            assert max(small.shape[:2]) == 320 and scale < 1, row["file"]
        located = frames.detect(small, crops=False)
        assert all(f.crop is None for f in located)
        full, ours = (sorted(faces, key=lambda f: f.bbox) for faces in
                      (frames.detect(img), enlarged(located, scale, img, pack.recognizer_input_size)))
        assert len(ours) == len(full), row["file"]
        for a, b in zip(ours, full):
            np.testing.assert_allclose(a.bbox, b.bbox, atol=0.01)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.01)
            assert a.crop.shape == b.crop.shape
        if ours:
            cosines = (embedder.embed([f.crop for f in ours]) * embedder.embed([f.crop for f in full])).sum(axis=1)
            assert cosines.min() >= 0.99999, (row["file"], cosines)
            worst = min(worst, cosines.min())
            compared += len(ours)
    assert compared >= len(manifest) // 2 and sent_whole < len(manifest) // 4
    print(f"{compared} faces, lowest cosine {worst:.6f}, {sent_whole} of {len(manifest)} photos sent whole")
    frame = np.zeros((360, 640, 3), np.uint8)  # the cameras' frame: exactly half
    assert shrunk(frame, 320)[0].shape == (180, 320, 3) and shrunk(frame, 320)[1] == 0.5
    tiny = np.zeros((180, 320, 3), np.uint8)
    assert shrunk(tiny, 320)[0] is tiny and shrunk(tiny, 320)[1] == 1.0  # already at the input size: sent as is


def test_embeddings_are_unit_length_with_the_models_dim(detector, embedder, manifest):
    img = cv2.imread(str(manifest[0]["file"]))
    vectors = embedder.embed([f.crop for f in detector.detect(img)])
    assert vectors.shape == (1, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 128)


def test_batch1_model_gives_the_same_vectors(batch1_pack, detector, embedder, manifest, tmp_path):
    fixed = FaceEmbedder(batch1_pack, onnx_providers(False), threads=2, cache_dir=tmp_path)
    # Whichever strategy was measured faster, it must have been one of the two that work.
    assert fixed.strategy in ("per_item", "dynamic_copy")
    assert set(fixed.fixed_batch_timings) == {"per_item_s", "dynamic_s", "crops"}
    crops = []
    for row in manifest[:6]:
        crops += [f.crop for f in detector.detect(cv2.imread(str(row["file"])))]
    np.testing.assert_allclose(fixed.embed(crops), embedder.embed(crops), atol=1e-4)


def test_dynamic_copy_of_batch1_graph_batches(batch1_pack, tmp_path):
    """The rewritten graph really accepts a batch and agrees with per-item runs."""
    from insightface.model_zoo import get_model

    path = _dynamic_batch_copy(batch1_pack.recognizer_path, tmp_path)
    dynamic = get_model(str(path), providers=["CPUExecutionProvider"])
    original = get_model(str(batch1_pack.recognizer_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(5)]
    batched = dynamic.get_feat(crops)
    assert batched.shape == (5, 128)
    np.testing.assert_allclose(batched, np.concatenate([original.get_feat([c]) for c in crops]), atol=1e-4)


# ---- packs as InsightFace ships them ---------------------------------------------------------------------
LANDMARK_AND_ATTRIBUTE_REASONS = {
    "1k3d68.onnx": "landmark model (landmark_3d_68)",
    "2d106det.onnx": "landmark model (landmark_2d_106)",
    "genderage.onnx": "attribute model (genderage)",
}


@pytest.mark.parametrize("pack_name,dim", [("antelopev2", 512), ("buffalo_l", 128), ("buffalo_s", 128)])
def test_insightface_packs_load_detector_and_recognizer_only(pack_name, dim, models_dir, tmp_path, caplog):
    """Exact file names and signatures of the published packs: the landmark models sort first by name and
    are square and >= 112 px, yet only the SCRFD detector and the ArcFace recognizer are used; the rest
    are listed with insightface's task for them."""
    build_pack(tmp_path / pack_name, pack_name, models_dir)
    with caplog.at_level(logging.WARNING, logger="vision.packs"):
        pack = load_pack(tmp_path / pack_name)
    detector, recognizer = PACKS[pack_name]
    assert (pack.name, pack.detector_path.name, pack.recognizer_path.name) == (pack_name, detector, recognizer)
    assert pack.embedding_dim == dim and pack.recognizer_input_size == 112 and pack.recognizer_fixed_batch is None
    reasons = {i.file: i.reason for i in pack.ignored}
    assert set(reasons) == set(LANDMARK_AND_ATTRIBUTE)
    for file, kind in LANDMARK_AND_ATTRIBUTE_REASONS.items():
        assert reasons[file].startswith(kind), reasons[file]
    guessed = [r for r in caplog.records if "is a guess" in r.getMessage()]
    if pack_name == "antelopev2":  # a known recognizer keeps its threshold, silently
        assert pack.threshold_is_known and pack.default_threshold == 0.6 and not guessed
    else:  # InsightFace publishes no threshold for w600k_*: the fallback is logged as a guess
        assert not pack.threshold_is_known and pack.default_threshold == packs.FALLBACK_THRESHOLD
        assert len(guessed) == 1 and recognizer.removesuffix(".onnx") in guessed[0].getMessage()


@pytest.mark.parametrize("pack_name,dim", [("antelopev2", 512), ("buffalo_s", 128)])
def test_routed_pack_detects_and_embeds_a_real_photo(pack_name, dim, models_dir, manifest, tmp_path):
    """The routed models run: the (real) detector finds the face, the recognizer gives `dim`-d unit vectors
    (antelopev2's glintr100 is the synthetic stand-in, so only its shape is meaningful)."""
    pack = load_pack(build_pack(tmp_path / pack_name, pack_name, models_dir))
    row = next(r for r in manifest if r["faces"] == 1)
    faces = FaceDetector(pack, onnx_providers(False), threads=1).detect(cv2.imread(str(row["file"])))
    vectors = FaceEmbedder(pack, onnx_providers(False), threads=1).embed([f.crop for f in faces])
    assert len(faces) == 1 and vectors.shape == (1, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_pack_with_only_landmark_and_attribute_models_is_refused(models_dir, tmp_path):
    """antelopev2 without glintr100: its other square-input models are not recognizers."""
    pack_dir = build_pack(tmp_path / "antelopev2", "antelopev2", models_dir, recognizer=False)
    with pytest.raises(ModelPackError, match="holds no recognition model") as err:
        load_pack(pack_dir)
    for file, kind in LANDMARK_AND_ATTRIBUTE_REASONS.items():
        assert f"{file}: {kind}" in str(err.value)


def test_unloadable_files_and_unused_recognizers_are_listed(models_dir, tmp_path):
    pack_dir = build_pack(tmp_path / "buffalo_s", "buffalo_s", models_dir)
    (pack_dir / "half_downloaded.onnx").write_bytes(b"\x08\x07not a whole model")
    synthetic_standin_model(pack_dir / "zz_second_recognizer.onnx", 112, 64)
    pack = load_pack(pack_dir)
    reasons = {i.file: i.reason for i in pack.ignored}
    assert pack.recognizer_name == "w600k_mbf"  # both batch dynamically: the first by name
    assert set(reasons) == {*LANDMARK_AND_ATTRIBUTE, "half_downloaded.onnx", "zz_second_recognizer.onnx"}
    assert reasons["half_downloaded.onnx"].startswith("insightface could not load it")
    assert reasons["zz_second_recognizer.onnx"] == "another recognizer is used (w600k_mbf.onnx)"


def test_nested_pack_folder_as_antelopev2_zip_unpacks(models_dir, tmp_path, monkeypatch):
    """antelopev2.zip unpacks to antelopev2/antelopev2/*.onnx: the models are found there, by path and as
    the default pack in ~/.insightface, without a download."""
    import insightface.utils.storage as storage

    nested = build_pack(tmp_path / "models" / "antelopev2" / "antelopev2", "antelopev2", models_dir)
    assert load_pack(tmp_path / "models" / "antelopev2").root == nested

    def no_download(*_a, **_k):
        raise AssertionError("the pack is on disk: nothing may be downloaded")

    monkeypatch.setattr(storage, "download", no_download)
    monkeypatch.setattr(packs, "INSIGHTFACE_ROOT", tmp_path)
    monkeypatch.delenv("SECUREGATE_MODELS", raising=False)
    pack = packs.resolve_pack(None)
    assert pack.root == nested and pack.recognizer_name == "glintr100" and pack.embedding_dim == 512
    # A pack name instead of a path: the alternative the download error suggests.
    build_pack(tmp_path / "models" / "buffalo_l", "buffalo_l", models_dir)
    monkeypatch.setenv("SECUREGATE_MODELS", "buffalo_l")
    assert packs.resolve_pack(None).recognizer_name == "w600k_r50"
