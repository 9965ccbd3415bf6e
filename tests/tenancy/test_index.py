"""FaceIndex against a brute-force numpy reference; its GPU path against the exact tier (CPU faiss injected)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from tenancy.index import GPU_MAX_K, FaceIndex, Match

DIM = 64


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def gallery(n: int, persons: int, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((n, DIM)))
    face_ids = [f"f{i}" for i in range(n)]
    person_ids = [f"p{i % persons}" for i in range(n)]
    return face_ids, person_ids, vectors


def reference(face_ids, person_ids, vectors, query, top_k, threshold) -> list[tuple[str, str]]:
    """Best face per person, persons ranked by it, only >= threshold."""
    scores = vectors @ (query / np.linalg.norm(query))
    best: dict[str, int] = {}
    for row in np.argsort(-scores, kind="stable"):
        if scores[row] < threshold:
            break
        best.setdefault(person_ids[row], row)
    ranked = sorted(best.items(), key=lambda item: -scores[item[1]])[:top_k]
    return [(face_ids[row], person) for person, row in ranked]


def as_pairs(matches: list[Match]) -> list[tuple[str, str]]:
    return [(m.face_id, m.person_id) for m in matches]


@pytest.mark.parametrize("top_k,threshold", [(1, -1.0), (5, 0.0), (10, 0.2), (50, -1.0), (3, 0.99)])
def test_exact_matches_bruteforce(top_k: int, threshold: float) -> None:
    face_ids, person_ids, vectors = gallery(3000, persons=400)
    index = FaceIndex.build(face_ids, person_ids, vectors)
    assert index.tier == "exact"
    queries = np.random.default_rng(1).standard_normal((7, DIM)).astype(np.float32)
    results = index.search(queries, top_k, threshold)
    for query, matches in zip(queries, results):
        assert as_pairs(matches) == reference(face_ids, person_ids, vectors, query, top_k, threshold)
        assert all(m.similarity >= threshold for m in matches)
        assert [m.similarity for m in matches] == sorted((m.similarity for m in matches), reverse=True)
        assert len({m.person_id for m in matches}) == len(matches)


def test_person_dedup_needs_widening() -> None:
    # One person owns the 40 faces closest to the query: top-3 persons must look past all of them.
    rng = np.random.default_rng(2)
    query = unit(rng.standard_normal((1, DIM)))[0]
    near = unit(query + 0.05 * rng.standard_normal((40, DIM)))
    far = unit(rng.standard_normal((500, DIM)))
    vectors = np.vstack([near, far])
    face_ids = [f"f{i}" for i in range(len(vectors))]
    person_ids = ["crowd"] * 40 + [f"p{i}" for i in range(500)]
    index = FaceIndex.build(face_ids, person_ids, vectors)
    matches = index.search(query[None], 3, -1.0)[0]
    assert as_pairs(matches) == reference(face_ids, person_ids, vectors, query, 3, -1.0)
    assert matches[0].person_id == "crowd"


def test_add_remove_and_swap_bookkeeping() -> None:
    face_ids, person_ids, vectors = gallery(500, persons=50)
    index = FaceIndex(DIM, initial_capacity=16)  # forces growth
    index.add(face_ids[:300], person_ids[:300], vectors[:300])
    index.add(face_ids[300:], person_ids[300:], vectors[300:])
    with pytest.raises(ValueError):
        index.add(["f1"], ["p1"], vectors[:1])
    removed = set(face_ids[::3])
    index.remove(sorted(removed) + ["unknown"])
    keep = [i for i, f in enumerate(face_ids) if f not in removed]
    assert len(index) == len(keep)
    kept_faces = [face_ids[i] for i in keep]
    kept_persons = [person_ids[i] for i in keep]
    queries = vectors[::50]
    for query, matches in zip(queries, index.search(queries, 8, -1.0)):
        assert as_pairs(matches) == reference(kept_faces, kept_persons, vectors[keep], query, 8, -1.0)
    index.remove(kept_faces)
    assert len(index) == 0 and index.search(queries, 3, -1.0) == [[]] * len(queries)


def test_centroids_follow_adds_and_removes() -> None:
    face_ids, person_ids, vectors = gallery(600, persons=60)
    index = FaceIndex.build(face_ids, person_ids, vectors)

    def expected(person: str, faces: list[str]) -> np.ndarray:
        rows = [i for i, (f, p) in enumerate(zip(face_ids, person_ids)) if p == person and f in faces]
        mean = vectors[rows].sum(axis=0)
        return mean / np.linalg.norm(mean)

    alive = list(face_ids)
    np.testing.assert_allclose(index.centroid("p7"), expected("p7", alive), atol=1e-5)
    assert index.search_centroids(expected("p7", alive)[None], 1, 0.0)[0][0][0] == "p7"

    gone = [f for f, p in zip(face_ids, person_ids) if p == "p7"][:5]
    index.remove(gone)
    alive = [f for f in alive if f not in gone]
    np.testing.assert_allclose(index.centroid("p7"), expected("p7", alive), atol=1e-5)
    top = index.search_centroids(expected("p7", alive)[None], 3, -1.0)[0]
    assert top[0][0] == "p7" and top[0][1] == pytest.approx(1.0, abs=1e-5)

    index.remove([f for f, p in zip(face_ids, person_ids) if p == "p8"])
    assert index.centroid("p8") is None and index.centroid("nobody") is None
    assert "p8" not in {p for p, _ in index.search_centroids(vectors[:20], 60, -1.0)[0]}

    index.add(["new"], ["p-new"], vectors[:1])
    assert index.search_centroids(vectors[:1], 1, 0.0)[0][0] == ("p-new", pytest.approx(1.0, abs=1e-5))


def test_ann_tier_recall_on_identity_clustered_probes() -> None:
    rng = np.random.default_rng(3)
    n, dim = 20_000, 128
    vectors = unit(rng.standard_normal((n, dim)))
    face_ids = [f"f{i}" for i in range(n)]
    person_ids = [f"p{i // 2}" for i in range(n)]
    exact = FaceIndex.build(face_ids, person_ids, vectors)
    ann = FaceIndex.build(face_ids, person_ids, vectors, ann_min_faces=10_000)
    assert exact.tier == "exact" and ann.tier == "ann"

    sources = rng.choice(n, 300, replace=False)
    noise = unit(rng.standard_normal((300, dim)))
    probes = unit(0.7 * vectors[sources] + 0.7 * noise)  # cosine ~0.7 with the source
    truth = [m[0].person_id for m in exact.search(probes, 1, 0.2)]
    found = [m[0].person_id if m else None for m in ann.search(probes, 1, 0.2)]
    assert np.mean([t == f for t, f in zip(truth, found)]) >= 0.99

    # Deletes: tombstoned faces never come back, and enough of them trigger a rebuild.
    ann.remove([face_ids[s] for s in sources[:50]])
    exact.remove([face_ids[s] for s in sources[:50]])
    gone = {face_ids[s] for s in sources[:50]}
    assert not gone & {m.face_id for ms in ann.search(probes[:50], 5, 0.2) for m in ms}
    ann.remove(face_ids[: n // 2])
    assert ann.tier == "ann" and ann._ann.tombstones == 0  # rebuilt
    exact.remove(face_ids[: n // 2])
    alive = [i for i, s in enumerate(sources) if i >= 50 and s >= n // 2]  # probes whose source survives
    for a, e in zip(ann.search(probes[alive], 3, 0.3), exact.search(probes[alive], 3, 0.3)):
        assert as_pairs(a)[:1] == as_pairs(e)[:1]


def test_memory_bytes_is_sane() -> None:
    face_ids, person_ids, vectors = gallery(5000, persons=1000)
    index = FaceIndex.build(face_ids, person_ids, vectors)
    per_face = index.memory_bytes() / len(index)
    assert 4 * DIM <= per_face <= 4 * DIM + 1024
    ann = FaceIndex.build(face_ids, person_ids, vectors, ann_min_faces=1000)
    assert index.memory_bytes() < ann.memory_bytes() < index.memory_bytes() + 100 * len(ann)


def test_person_vectors_follow_adds_and_removes():
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((6, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaceIndex.build([f"f{i}" for i in range(6)], ["a", "b", "a", "b", "a", "c"], vectors)
    np.testing.assert_allclose(np.sort(index.person_vectors("a"), axis=0), np.sort(vectors[[0, 2, 4]], axis=0), atol=1e-6)
    index.remove(["f0", "f4"])
    np.testing.assert_allclose(index.person_vectors("a"), vectors[[2]], atol=1e-6)
    assert index.person_vectors("nobody").shape == (0, 16)


# ---------------------------------------------------------------------------------------------- GPU tier on CPU


class CpuFlatStandIn:
    """Stand-in for FAISS's GPU flat index, so FaceIndex's GPU path runs here: a real CPU faiss.IndexFlatIP
    behind the calls FaceIndex makes (add, search), refusing k > GPU_MAX_K as FAISS GPU does. Records each k."""

    def __init__(self, dim: int) -> None:
        self.flat = faiss.IndexFlatIP(dim)
        self.ks: list[int] = []
        self.adds: list[int] = []
        CpuFlatStandIn.last = self

    def add(self, vectors: np.ndarray) -> None:
        self.adds.append(len(vectors))
        self.flat.add(vectors)

    def search(self, queries: np.ndarray, k: int):
        if k > GPU_MAX_K:
            raise RuntimeError(f"k {k} > {GPU_MAX_K}: FAISS GPU refuses this")
        self.ks.append(k)
        return self.flat.search(queries, k)


def gpu_and_exact(face_ids, person_ids, vectors) -> tuple[FaceIndex, FaceIndex]:
    gpu = FaceIndex.build(face_ids, person_ids, vectors, use_gpu=True, flat_index=CpuFlatStandIn)
    exact = FaceIndex.build(face_ids, person_ids, vectors, use_gpu=False)
    assert gpu.tier == "gpu" and exact.tier == "exact"
    return gpu, exact


def test_gpu_path_matches_exact_tier_on_a_10k_tenant() -> None:
    face_ids, person_ids, vectors = gallery(10_000, persons=2_500, seed=5)
    gpu, exact = gpu_and_exact(face_ids, person_ids, vectors)
    rng = np.random.default_rng(6)
    probes = unit(0.7 * vectors[rng.choice(10_000, 24, replace=False)] + 0.7 * unit(rng.standard_normal((24, DIM))))
    for top_k, threshold in [(1, 0.3), (10, 0.0), (50, -1.0), (200, 0.1)]:
        # Same faces, persons and bit-identical similarities as the exact tier.
        assert gpu.search(probes, top_k, threshold) == exact.search(probes, top_k, threshold)
    device = CpuFlatStandIn.last
    assert max(device.ks) <= GPU_MAX_K and device.ks[0] == 64  # top candidates, not all 10K scores
    assert device.adds == [10_000]


def test_gpu_path_widens_while_one_person_holds_the_nearest_faces() -> None:
    rng = np.random.default_rng(7)
    query = unit(rng.standard_normal((1, DIM)))[0]
    for crowd in (300, 3_000):  # widened within GPU_MAX_K; beyond it (the host scores that query)
        near = unit(query + 0.05 * rng.standard_normal((crowd, DIM)))
        far = unit(rng.standard_normal((10_000 - crowd, DIM)))
        vectors = np.vstack([near, far])
        face_ids = [f"f{i}" for i in range(len(vectors))]
        person_ids = ["crowd"] * crowd + [f"p{i}" for i in range(len(far))]
        gpu, exact = gpu_and_exact(face_ids, person_ids, vectors)
        matches = gpu.search(query[None], 3, -1.0)[0]
        assert matches == exact.search(query[None], 3, -1.0)[0]
        assert as_pairs(matches) == reference(face_ids, person_ids, vectors, query, 3, -1.0)
        assert matches[0].person_id == "crowd" and len(matches) == 3
        ks = CpuFlatStandIn.last.ks
        assert ks[0] == 64 and len(ks) > 1 and max(ks) <= GPU_MAX_K
        assert (max(ks) == GPU_MAX_K) == (crowd > GPU_MAX_K)


def test_gpu_path_follows_adds_and_removes() -> None:
    face_ids, person_ids, vectors = gallery(10_000, persons=2_000, seed=8)
    gpu, exact = gpu_and_exact(face_ids[:9_000], person_ids[:9_000], vectors[:9_000])
    probes = vectors[::500]
    assert gpu.search(probes, 5, 0.0) == exact.search(probes, 5, 0.0)
    device = CpuFlatStandIn.last
    for index in (gpu, exact):
        index.add(face_ids[9_000:], person_ids[9_000:], vectors[9_000:])
    assert gpu.search(probes, 5, 0.0) == exact.search(probes, 5, 0.0)
    assert CpuFlatStandIn.last is device and device.adds == [9_000, 1_000]  # appended, not rebuilt
    for index in (gpu, exact):
        index.remove(face_ids[::3])
    assert gpu.search(probes, 5, 0.0) == exact.search(probes, 5, 0.0)
    assert CpuFlatStandIn.last is not device and CpuFlatStandIn.last.adds == [len(gpu)]  # rebuilt after removes
