"""Model packs and inference, without Ray: the same classes the deployments run."""

import os

import cv2
import numpy as np
import pytest

from securegate import models
from securegate.models import FaceDetector, FaceEmbedder, ModelPackError, load_pack, onnx_providers


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


def test_offline_without_models_says_how_to_fix(tmp_path, monkeypatch):
    """No SECUREGATE_MODELS, no antelopev2 on disk, and the fetch fails (offline): the error names the fix."""
    import insightface.utils.storage as storage

    monkeypatch.delenv("SECUREGATE_MODELS", raising=False)
    monkeypatch.setattr(models, "INSIGHTFACE_ROOT", tmp_path)

    def offline(*_a, **_k):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(storage, "ensure_available", offline)
    with pytest.raises(ModelPackError, match="SECUREGATE_MODELS"):
        models.resolve_pack(None)


def test_env_var_points_at_the_pack(models_dir, monkeypatch):
    monkeypatch.setenv("SECUREGATE_MODELS", str(models_dir))
    assert models.resolve_pack(None).embedding_dim == 128


@pytest.fixture(scope="module")
def detector(pack):
    return FaceDetector(pack, onnx_providers(False), threads=2)


@pytest.fixture(scope="module")
def embedder(pack):
    return FaceEmbedder(pack, onnx_providers(False), threads=2)


def test_parity_with_insightface_reference(pack, detector, embedder, manifest, tmp_path):
    """Our embeddings equal insightface's FaceAnalysis on the same models, within 1e-4, on every photo."""
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

    path = models._dynamic_batch_copy(batch1_pack.recognizer_path, tmp_path)
    dynamic = get_model(str(path), providers=["CPUExecutionProvider"])
    original = get_model(str(batch1_pack.recognizer_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(5)]
    batched = dynamic.get_feat(crops)
    assert batched.shape == (5, 128)
    np.testing.assert_allclose(batched, np.concatenate([original.get_feat([c]) for c in crops]), atol=1e-4)
