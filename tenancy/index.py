"""In-memory face index: cosine top-k over L2-normalised float32 vectors, de-duplicated by person.

Decrypted vectors live only here, in RAM. Two tiers:

Exact tier (always present; the ANN tier re-ranks against it): numpy `vectors @ query` (BLAS sgemv/sgemm,
both cores) followed by a threshold mask and a partial sort of the survivors. Measured on this 2-core
machine, single-probe p50:
    100K x 512: numpy 12 ms, FAISS IndexFlatIP 22 ms (FAISS parallelises over queries, so one probe runs
                on one core); 1M x 512: numpy ~200 ms (memory-bandwidth bound: 2 GB per probe).
    sqlite-vec vec0 is slower than both (see benchmarks/search.py for the run's numbers).
Numpy is therefore the exact tier. Thresholding before partitioning makes it slightly cheaper than a
plain matmul + argpartition, because only the faces above the threshold are partitioned.

ANN tier (len >= ann_min_faces): a FAISS PQ fast-scan index (4-bit product quantisation, one sub-quantiser
per 4 dims: d/8 bytes per face) scanned for >= 64 candidates, which are then re-ranked exactly from the
float32 vectors. Graded on a gallery calibrated on real photos (benchmarks/search_tiers.py: anisotropic,
clustered identities; recall per genuine-similarity band), 100K x 512, 2026-12-02, shared host (load 2-4):
    PQ fast-scan d/4 sub-quantisers + re-rank of 64: same top-1 as exact in every band, 0.45 ms (exact 6.5);
    the earlier d/8 sub-quantisers: 0.85 of the exact top-1 at genuine cosine 0.35-0.5, 0.26 ms;
    HNSW-Flat M=32: 0.53 / 0.73 at efSearch 64 / 256 in that band (0.48 / 1.52 ms);
    IVF1024,PQ64: 0.22 / 0.24 at nprobe 16 / 64, and impostors accepted where exact answers unknown.
The first choice was made on vectors uniform on the sphere, probes at cosine 0.7 to their source:
    HNSW-Flat M=32 efC=40, 100K x 512: build 51 s (=> ~10 min at 1M on 2 cores), recall@1 0.63 at
        efSearch 64 (uniform high-dimensional data defeats graph navigation);
    IVF1024-Flat, 1M x 512: recall@1 0.58 / 0.89 / 0.96 at nprobe 16 / 64 / 128 (2.8 / 12 / 21 ms);
    PQ fast-scan + exact re-rank of 64 candidates, 1M x 512: recall@1 1.00 at 3.2 ms, build 3.5 s.
The fast scan is still linear in n but reads 16x fewer bytes than the float32 scan, with SIMD lookup
tables, which is a >= 10x speed-up at 1M with no recall loss after re-ranking.
Adds append codes (no retraining); removals tombstone the code and the index is rebuilt (retrained) once
tombstones exceed a fraction of it.

GPU tier: when faiss reports GPUs (or use_gpu=True), a FAISS flat inner-product index on the GPU(s) mirrors
the rows and returns the top candidates of each query (k <= 2048: FAISS GPU's k-selection refuses more), so
only k scores per query come back to the host. The candidates are re-scored canonically on the host
(`exact_scores`) and de-duplicated by person; k widens x4 while the persons found are not provably the top_k
(the same pruning bound as the exact tier), and a query that would need k > 2048 is scored by the exact tier
on the host. The ANN tier is not built (brute force on a GPU beats it). The device index is built by
`flat_index(dim)`; tests inject a CPU `faiss.IndexFlatIP` with the same k limit to run this path without a GPU.

Rejections ("not this person", tenancy/store.py): a person may hold negative examples. For a probe q and a
person P with faces F and rejections R, P is a candidate only if max cos(q, F) > max cos(q, R), and max cos(q, F)
passes the threshold (centroid search: cos(q, centroid) > max cos(q, R)). Only rejections scoring at or above
the threshold can veto anyone (a candidate's best face is at least that), so a search asks the tier for
top_k + V persons, V = the persons with such a rejection for this probe, drops the vetoed ones and cuts at
top_k: exact, since at most V persons ranked above a kept one are dropped. Rejection scores are canonical
(`exact_scores`), so every shard (each holds all of the tenant's rejections) vetoes alike, and a shard's
filtered top_k still merges exactly (`merge_matches`: a person kept globally is kept by the shard holding
its best face). A tenant with no rejections pays one length check per search.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import faiss
import numpy as np

# Candidates fetched per wanted person before person de-duplication; widened x4 while not enough.
_OVERFETCH = 4
_ANN_MIN_CANDIDATES = 64
_ANN_MAX_CANDIDATES = 4096
# Rebuild the ANN tier once this fraction of its codes are tombstones.
_ANN_TOMBSTONE_REBUILD_FRACTION = 0.2
# Drop the ANN tier only well below ann_min_faces so a tenant hovering at the limit doesn't thrash.
_ANN_DROP_FRACTION = 0.8
_ANN_TRAIN_SAMPLE = 65_536
# Bound the [n, q] score matrix of a batched exact search to ~256 MB.
_SCORE_BLOCK_ELEMENTS = 64 * 1024 * 1024
# FAISS GPU selects at most this many neighbours per query (GPU_MAX_SELECTION_K); it refuses a larger k.
GPU_MAX_K = 2048
_GPU_MIN_CANDIDATES = 64
_PYTHON_ID_BYTES = sys.getsizeof("0" * 32) + 8 + 100  # str object + list slot + dict entry, approx.


@dataclass(frozen=True, slots=True)
class Match:
    face_id: str
    person_id: str
    similarity: float


def _normalised(vectors: np.ndarray, dim: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit length (written into `out` when given, saving a copy of the whole gallery)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {vectors.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]  # no [n, dim] temporary
    if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
        raise ValueError("vectors must be finite and non-zero")
    return np.divide(vectors, norms, out=out)


def exact_scores(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Canonical cosine scores of `rows` [c, d] against `query` [d], as float32.

    BLAS (sgemv/sgemm) rounds a row's dot product differently depending on the shape of the matrix it sits in
    (blocking, thread split, tail kernels), so the same face scored inside a 2M-row index and inside a 500K-row
    shard can differ in the last bit. The final scores of a search come from here instead: float32 x float32
    products are exact in float64, and they are summed by a fixed pairwise tree of elementwise adds (each add is
    one IEEE operation whatever the SIMD width), so the result depends only on the two vectors. That is what
    makes a sharded search return bit-identical similarities (and the same tie-breaks) as an unsharded one.
    """
    rows = np.asarray(rows, dtype=np.float32)
    if rows.shape[0] == 0:
        return np.empty(0, dtype=np.float32)
    products = rows.astype(np.float64) * np.asarray(query, dtype=np.float64)[None, :]
    width = 1 << max(0, (products.shape[1] - 1).bit_length())
    if width != products.shape[1]:
        products = np.pad(products, ((0, 0), (0, width - products.shape[1])))
    while width > 1:
        width //= 2
        products = products[:, :width] + products[:, width : 2 * width]
    return products[:, 0].astype(np.float32)


def score_slack(dim: int) -> float:
    """A bound on |BLAS float32 score - exact_scores| for unit vectors: gamma_d * sum|a_i q_i| <= d * 2^-24
    (any summation order), with a safety factor, plus the final float32 rounding of the canonical score."""
    return 1.1 * max(dim, 1) * 2.0 ** -24 + 2.0 ** -22


def rank_order(similarities: np.ndarray, face_ids: Sequence[str]) -> np.ndarray:
    """Positions sorted by (similarity descending, face id ascending): a total order that does not depend on
    where a face sits in an index, so every layout breaks ties the same way."""
    if len(similarities) == 0:
        return np.empty(0, dtype=np.int64)
    return np.lexsort((np.asarray(face_ids, dtype=str), -np.asarray(similarities, dtype=np.float64)))


def merge_matches(partials: Iterable[Sequence[Match]], top_k: int) -> list[Match]:
    """Merge the per-shard answers of one query into the global top_k persons.

    Per person keep the best face (highest similarity; ties to the smaller face id), rank persons by
    (similarity desc, face id asc), cut at top_k. Exact, given that each shard returned its own top_k persons
    (best face each, >= threshold) under the same order: let P be in the global top_k with best face f held
    by shard S. Every person ranked above P *within S* has a face in S beating f, hence a global best face
    beating f, hence is ranked above P globally; so P's rank in S is <= its global rank <= top_k, and S
    returned P with face f. Persons outside the global top_k can be returned by some shard but are cut,
    since the top_k persons above them are all present with their true best faces.
    """
    best: dict[str, Match] = {}
    for matches in partials:
        for m in matches:
            held = best.get(m.person_id)
            if held is None or m.similarity > held.similarity or (
                    m.similarity == held.similarity and m.face_id < held.face_id):
                best[m.person_id] = m
    ranked = sorted(best.values(), key=lambda m: (-m.similarity, m.face_id))
    return ranked[:top_k]


def merge_search(per_shard: Sequence[Sequence[Sequence[Match]]], top_k: int) -> list[list[Match]]:
    """`merge_matches` for a batch: per_shard[s][q] is shard s's answer to query q."""
    if not per_shard:
        return []
    return [merge_matches([shard[q] for shard in per_shard], top_k) for q in range(len(per_shard[0]))]


def _pq_subquantizers(dim: int) -> int:
    """4-bit sub-quantisers, one per 4 dims (d/8 bytes a face). One per 8 dims at 512-d lost 15 % of the
    exact top-1 answers for genuine probes at cosine 0.35-0.5 on a calibrated gallery (benchmarks/search_tiers.py);
    one per 4 lost none, at 0.45 instead of 0.26 ms per probe at 100K (exact: 6.5 ms)."""
    target = dim // 4
    for m in range(max(target, 1), 0, -1):
        if dim % m == 0 and m % 2 == 0:
            return m
    return 1


def _best_per_person(order: np.ndarray, person_codes: np.ndarray, top_k: int) -> np.ndarray:
    """From rows sorted by descending score, keep the first (best) row of each person, top_k of them."""
    _, first = np.unique(person_codes[order], return_index=True)
    return order[np.sort(first)][:top_k]


class _AnnTier:
    """PQ fast-scan codes over the index's rows; labels are insertion order, mapped to rows."""

    def __init__(self, dim: int, training: np.ndarray) -> None:
        self.index = faiss.IndexPQFastScan(dim, _pq_subquantizers(dim), 4, faiss.METRIC_INNER_PRODUCT)
        self.index.train(training)
        self.row_of_label = np.empty(0, dtype=np.int64)  # -1 = tombstone
        self.tombstones = 0

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Appends codes; returns the labels given to `rows`."""
        first = self.index.ntotal
        self.index.add(vectors)
        self.row_of_label = np.concatenate([self.row_of_label, rows.astype(np.int64)])
        return np.arange(first, first + len(rows), dtype=np.int64)

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Rows of the ~k best candidates per query ([q, k], -1 for tombstones/padding)."""
        _, labels = self.index.search(queries, min(k, self.index.ntotal))
        rows = np.where(labels >= 0, self.row_of_label[np.maximum(labels, 0)], -1)
        return rows

    def memory_bytes(self) -> int:
        return self.index.ntotal * self.index.code_size + self.row_of_label.nbytes


def gpu_flat_index(dim: int):
    """Exact inner-product index on every visible GPU (needs a faiss build with GPU support)."""
    return faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))


class FaceIndex:
    """Top-k persons by cosine similarity of their best face, plus per-person centroids."""

    def __init__(
        self,
        dim: int,
        ann_min_faces: int = 200_000,
        use_gpu: bool | None = None,
        initial_capacity: int = 1024,
        flat_index: Callable[[int], object] = gpu_flat_index,
    ) -> None:
        self.dim = dim
        self.ann_min_faces = ann_min_faces
        self.use_gpu = faiss.get_num_gpus() > 0 if use_gpu is None else use_gpu
        self._flat_index = flat_index
        self._n = 0
        self._vectors = np.empty((initial_capacity, dim), dtype=np.float32)
        self._person_of_row = np.empty(initial_capacity, dtype=np.int64)  # person code per row
        self._ann_label_of_row = np.full(initial_capacity, -1, dtype=np.int64)
        self._face_ids: list[str] = []
        self._row_of_face: dict[str, int] = {}
        self._person_ids: list[str] = []  # code -> person id (codes are never reused)
        self._code_of_person: dict[str, int] = {}
        self._faces_per_person = np.zeros(0, dtype=np.int64)
        self._ann: _AnnTier | None = None
        self._gpu_flat = None  # device flat index mirroring the rows: appended on add, rebuilt lazily after removes
        self._centroids: np.ndarray | None = None  # cached [persons, dim], built on first centroid search
        self._stale_centroids: set[int] = set()
        # Rejections: unit vectors [m, dim], their ids and person codes (few; searched in full when any exist).
        self._rejection_ids: list[str] = []
        self._rejection_vectors = np.empty((0, dim), dtype=np.float32)
        self._rejection_codes = np.empty(0, dtype=np.int64)

    # ------------------------------------------------------------------ construction / mutation

    @classmethod
    def build(cls, face_ids: list[str], person_ids: list[str], vectors: np.ndarray, **options) -> FaceIndex:
        index = cls(vectors.shape[1] if np.ndim(vectors) == 2 else 0, initial_capacity=max(len(face_ids), 1), **options)
        index.add(face_ids, person_ids, vectors)
        return index

    def _grow(self, needed: int) -> None:
        capacity = len(self._vectors)
        if needed <= capacity:
            return
        capacity = max(needed, capacity + capacity // 2)
        vectors = np.empty((capacity, self.dim), dtype=np.float32)
        vectors[: self._n] = self._vectors[: self._n]
        self._vectors = vectors
        self._person_of_row = np.resize(self._person_of_row, capacity)
        labels = np.full(capacity, -1, dtype=np.int64)
        labels[: self._n] = self._ann_label_of_row[: self._n]
        self._ann_label_of_row = labels

    def _person_codes(self, person_ids: list[str]) -> np.ndarray:
        codes = self._code_of_person
        for person_id in person_ids:
            if person_id not in codes:
                codes[person_id] = len(self._person_ids)
                self._person_ids.append(person_id)
        return np.fromiter((codes[p] for p in person_ids), dtype=np.int64, count=len(person_ids))

    def add(self, face_ids: list[str], person_ids: list[str], vectors: np.ndarray) -> None:
        if not len(face_ids) == len(person_ids) == len(vectors):
            raise ValueError("face_ids, person_ids and vectors must have the same length")
        if len(face_ids) == 0:
            return
        start, stop = self._n, self._n + len(face_ids)
        new_rows = dict(zip(face_ids, range(start, stop)))
        if len(new_rows) != len(face_ids) or not self._row_of_face.keys().isdisjoint(new_rows):
            raise ValueError("face ids must be unique and not already indexed")
        self._grow(stop)
        unit = _normalised(vectors, self.dim, out=self._vectors[start:stop])
        codes = self._counted_codes(person_ids)
        self._person_of_row[start:stop] = codes
        self._face_ids.extend(face_ids)
        if self._row_of_face:
            self._row_of_face.update(new_rows)
        else:
            self._row_of_face = new_rows
        np.add.at(self._faces_per_person, codes, 1)
        self._n = stop
        self._mark_centroids_stale(codes)
        if self._gpu_flat is not None:
            self._gpu_flat.add(unit)  # rows are appended in order, so device labels stay row numbers
        if self._ann is not None:
            self._ann_label_of_row[start:stop] = self._ann.add(unit, np.arange(start, stop))
        elif not self.use_gpu and self._n >= self.ann_min_faces:
            self.rebuild_ann()

    def _counted_codes(self, person_ids: list[str]) -> np.ndarray:
        """Person codes of `person_ids`, new persons given a face count of 0."""
        known_persons = len(self._person_ids)
        codes = self._person_codes(person_ids)
        if len(self._person_ids) > known_persons:
            counts = np.zeros(len(self._person_ids), dtype=np.int64)
            counts[:known_persons] = self._faces_per_person[:known_persons]
            self._faces_per_person = counts
        return codes

    def reassign(self, face_ids: list[str], person_id: str) -> None:
        """Faces (those indexed here; others ignored) now belong to `person_id`: a merge or a moved face. Rows,
        vectors and the ANN/GPU tiers are unchanged; only the row's person code and the counts move."""
        rows = [self._row_of_face[f] for f in face_ids if f in self._row_of_face]
        code = int(self._counted_codes([person_id])[0])
        if not rows:
            return
        rows_array = np.asarray(rows, dtype=np.int64)
        old = self._person_of_row[rows_array].copy()
        np.subtract.at(self._faces_per_person, old, 1)
        self._faces_per_person[code] += len(rows)
        self._person_of_row[rows_array] = code
        self._mark_centroids_stale(np.concatenate([old, [code]]))

    # ------------------------------------------------------------------ rejections

    @property
    def rejections(self) -> int:
        return len(self._rejection_ids)

    def add_rejections(self, rejection_ids: list[str], person_ids: list[str], vectors: np.ndarray) -> None:
        """Negative examples of persons (ids already indexed are skipped: forwards are idempotent)."""
        known = set(self._rejection_ids)
        fresh = [i for i, r in enumerate(rejection_ids) if r not in known]
        if not fresh:
            return
        unit = _normalised(np.asarray(vectors, np.float32).reshape(-1, self.dim)[fresh], self.dim)
        self._rejection_ids.extend(rejection_ids[i] for i in fresh)
        self._rejection_vectors = np.concatenate([self._rejection_vectors, unit])
        self._rejection_codes = np.concatenate([self._rejection_codes, self._counted_codes([person_ids[i] for i in fresh])])

    def remove_rejections(self, rejection_ids: Iterable[str] = (), persons: Iterable[str] = ()) -> None:
        """Drop rejections by id, and every rejection of `persons` (a deleted person's)."""
        ids, codes = set(rejection_ids), {self._code_of_person[p] for p in persons if p in self._code_of_person}
        keep = np.array([r not in ids and int(c) not in codes for r, c in zip(self._rejection_ids, self._rejection_codes)], dtype=bool)
        if keep.all():
            return
        self._rejection_ids = [r for r, k in zip(self._rejection_ids, keep) if k]
        self._rejection_vectors = self._rejection_vectors[keep]
        self._rejection_codes = self._rejection_codes[keep]

    def reassign_rejections(self, from_person: str, to_person: str) -> None:
        """A merge: the merged person's rejections become the surviving person's."""
        source = self._code_of_person.get(from_person)
        if source is None or not len(self._rejection_ids):
            return
        self._rejection_codes[self._rejection_codes == source] = int(self._counted_codes([to_person])[0])

    def rejection_similarity(self, person_id: str, query: np.ndarray) -> float | None:
        """max cos(query, R) over the person's rejections (canonical scores), None if they have none."""
        code = self._code_of_person.get(person_id)
        if code is None or not len(self._rejection_ids):
            return None
        mine = self._rejection_vectors[self._rejection_codes == code]
        if not len(mine):
            return None
        unit = _normalised(np.atleast_2d(query), self.dim)[0]
        return float(exact_scores(mine, unit).max())

    def _vetoes(self, queries: np.ndarray, threshold: float) -> list[dict[str, float]]:
        """Per (unit) query: {person id: max cos(q, R)} for the persons with a rejection that can veto a match
        at `threshold` (its BLAS score within slack of it; the compared value is canonical)."""
        slack = score_slack(self.dim)
        scores = self._rejection_vectors @ queries.T  # [m, q]
        out: list[dict[str, float]] = []
        for column, query in enumerate(queries):
            rows = np.flatnonzero(scores[:, column] >= threshold - slack)
            veto: dict[str, float] = {}
            if rows.size:
                for row, sim in zip(rows.tolist(), exact_scores(self._rejection_vectors[rows], query).tolist()):
                    person_id = self._person_ids[self._rejection_codes[row]]
                    veto[person_id] = max(sim, veto.get(person_id, -np.inf))
            out.append(veto)
        return out

    def remove(self, face_ids: list[str]) -> None:
        """Remove faces (unknown ids are ignored). Keeps rows dense by moving the last row into each hole."""
        touched: list[int] = []
        for face_id in face_ids:
            row = self._row_of_face.pop(face_id, None)
            if row is None:
                continue
            code = int(self._person_of_row[row])
            touched.append(code)
            self._faces_per_person[code] -= 1
            if self._ann is not None:
                self._ann.row_of_label[self._ann_label_of_row[row]] = -1
                self._ann.tombstones += 1
            last = self._n - 1
            if row != last:
                moved_id = self._face_ids[last]
                self._vectors[row] = self._vectors[last]
                self._person_of_row[row] = self._person_of_row[last]
                self._face_ids[row] = moved_id
                self._row_of_face[moved_id] = row
                label = self._ann_label_of_row[last]
                self._ann_label_of_row[row] = label
                if self._ann is not None and label >= 0:
                    self._ann.row_of_label[label] = row
            self._face_ids.pop()
            self._n = last
        if not touched:
            return
        self._mark_centroids_stale(np.array(touched))
        self._gpu_flat = None  # removals move rows: the device copy is rebuilt at the next search
        if self._ann is not None:
            if self._n < self.ann_min_faces * _ANN_DROP_FRACTION:
                self._ann = None
                self._ann_label_of_row[: self._n] = -1
            elif self._ann.tombstones > _ANN_TOMBSTONE_REBUILD_FRACTION * self._ann.index.ntotal:
                self.rebuild_ann()

    def rebuild_ann(self) -> None:
        """(Re)train and fill the ANN tier from the current rows, dropping tombstones."""
        rows = self._vectors[: self._n]
        sample = rows if self._n <= _ANN_TRAIN_SAMPLE else rows[np.random.default_rng(0).choice(self._n, _ANN_TRAIN_SAMPLE, replace=False)]
        ann = _AnnTier(self.dim, sample)
        self._ann_label_of_row[: self._n] = ann.add(rows, np.arange(self._n))
        self._ann = ann

    # ------------------------------------------------------------------ introspection

    def __len__(self) -> int:
        return self._n

    def __contains__(self, face_id: object) -> bool:
        return face_id in self._row_of_face

    def face_id_set(self) -> set[str]:
        return set(self._row_of_face)

    def rejection_id_set(self) -> set[str]:
        return set(self._rejection_ids)

    def vector_of(self, face_id: str) -> np.ndarray | None:
        """A copy of the face's unit vector, or None when it is not indexed here."""
        row = self._row_of_face.get(face_id)
        return None if row is None else self._vectors[row].copy()

    @property
    def tier(self) -> str:
        return "gpu" if self.use_gpu else "ann" if self._ann is not None else "exact"

    def memory_bytes(self) -> int:
        """Approximate resident bytes: vector storage (with growth headroom), row maps, ids, ANN codes."""
        total = self._vectors.nbytes + self._person_of_row.nbytes + self._ann_label_of_row.nbytes
        total += self._faces_per_person.nbytes + _PYTHON_ID_BYTES * (self._n + len(self._person_ids))
        if self._ann is not None:
            total += self._ann.memory_bytes()
        if self._centroids is not None:
            total += self._centroids.nbytes
        total += self._rejection_vectors.nbytes + self._rejection_codes.nbytes + _PYTHON_ID_BYTES * len(self._rejection_ids)
        return total

    # ------------------------------------------------------------------ face search

    def search(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        """For each query, up to top_k persons (best face each) with similarity >= threshold, best first."""
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        unit = _normalised(np.atleast_2d(queries), self.dim)
        if self._n == 0:
            return [[] for _ in unit]
        if not self._rejection_ids:  # the common case: no extra work at all
            return self._search_tier(unit, top_k, threshold)
        vetoes = self._vetoes(unit, threshold)
        found = self._search_tier(unit, top_k + max(len(v) for v in vetoes), threshold)
        return [[m for m in matches if m.similarity > veto.get(m.person_id, -np.inf)][:top_k]
                for matches, veto in zip(found, vetoes)]

    def _search_tier(self, unit: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        if self.use_gpu:
            return self._search_gpu(unit, top_k, threshold)
        if self._ann is not None:
            return self._search_ann(unit, top_k, threshold)
        return self._search_exact(unit, top_k, threshold)

    def _scores(self, queries: np.ndarray) -> np.ndarray:
        """[n, q] cosine scores (BLAS, float32)."""
        if len(queries) == 1:  # matrix-vector (sgemv) beats a one-column sgemm
            return (self._vectors[: self._n] @ queries[0])[:, None]
        return self._vectors[: self._n] @ queries.T

    def _search_exact(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        block = max(1, _SCORE_BLOCK_ELEMENTS // self._n)
        results: list[list[Match]] = []
        for start in range(0, len(queries), block):
            scores = self._scores(queries[start : start + block])
            for column in range(scores.shape[1]):
                results.append(self._top_persons(scores[:, column], queries[start + column], top_k, threshold))
        return results

    def _top_persons(self, scores: np.ndarray, query: np.ndarray, top_k: int, threshold: float) -> list[Match]:
        """Exact: the best top_k persons among rows whose score passes the threshold.

        `scores` (BLAS, float32) only prune: every row within `slack` of the threshold is a candidate, the
        `fetch` best candidates are re-scored canonically (`exact_scores`), and thresholding, ranking and the
        reported similarities use those canonical scores, ties broken by face id. The answer is final once
        top_k persons are found whose last one scores above anything a row left out could reach (its BLAS
        score + slack); otherwise the fetch widens. So the result depends only on the set of faces, not on
        their layout in memory: a shard of the same faces answers with the same bits.
        """
        slack = score_slack(self.dim)
        above = np.flatnonzero(scores >= threshold - slack)
        fetch = top_k * _OVERFETCH
        while True:
            if above.size <= fetch:
                candidates, ceiling = above, None
            else:
                cut = above.size - fetch
                candidates = above[np.argpartition(scores[above], cut)[cut:]]
                ceiling = float(scores[candidates].min()) + slack  # no row left out scores above this
            exact = exact_scores(self._vectors[candidates], query)
            passing = exact >= threshold
            candidates, exact = candidates[passing], exact[passing]
            order = rank_order(exact, [self._face_ids[row] for row in candidates.tolist()])
            picked = _best_per_person(order, self._person_of_row[candidates], top_k)
            if ceiling is None or (len(picked) >= top_k and float(exact[picked[-1]]) > ceiling):
                return self._matches(candidates[picked], exact[picked])
            fetch *= 4

    def _search_ann(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        assert self._ann is not None
        results: list[list[Match]] = []
        fetch = max(_ANN_MIN_CANDIDATES, top_k * _OVERFETCH)
        candidate_rows = self._ann.candidates(queries, fetch)
        for query, rows in zip(queries, candidate_rows):
            rows = rows[rows >= 0]
            results.append(self._rerank(query, rows, top_k, threshold, fetch))
        return results

    def _rerank(self, query: np.ndarray, rows: np.ndarray, top_k: int, threshold: float, fetch: int) -> list[Match]:
        """Exact re-rank of ANN candidates; widens the candidate set (then falls back to exact) when every
        candidate passed the threshold but fewer than top_k persons were found."""
        while True:
            scores = self._vectors[rows] @ query
            passing = scores >= threshold
            order = rows[passing][np.argsort(-scores[passing], kind="stable")]
            best = _best_per_person(order, self._person_of_row, top_k)
            if len(best) >= top_k or not passing.all() or len(rows) >= self._n:
                return self._matches(best, self._vectors[best] @ query)
            if fetch >= _ANN_MAX_CANDIDATES:
                return self._top_persons(self._vectors[: self._n] @ query, query, top_k, threshold)
            fetch *= 4
            rows = self._ann.candidates(query[None], fetch)[0]
            rows = rows[rows >= 0]

    def _matches(self, rows: np.ndarray, similarities: np.ndarray) -> list[Match]:
        person_ids, face_ids = self._person_ids, self._face_ids
        return [
            Match(face_ids[row], person_ids[self._person_of_row[row]], float(sim))
            for row, sim in zip(rows.tolist(), similarities.tolist())
        ]

    def _device_flat(self):
        if self._gpu_flat is None:
            flat = self._flat_index(self.dim)
            flat.add(self._vectors[: self._n])
            self._gpu_flat = flat
        return self._gpu_flat

    def _search_gpu(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        flat = self._device_flat()
        k = min(self._n, GPU_MAX_K, max(_GPU_MIN_CANDIDATES, top_k * _OVERFETCH))
        scores, rows = flat.search(queries, k)  # one device call for every face of the image
        return [self._gpu_top_persons(flat, query, scores[i], rows[i], k, top_k, threshold)
                for i, query in enumerate(queries)]

    def _gpu_top_persons(self, flat, query: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int,
                         top_k: int, threshold: float) -> list[Match]:
        """Exact re-rank of the device's k best rows, as `_top_persons` does with BLAS scores: device scores only
        prune (within `slack` of the canonical ones); rows left out score at most the k-th device score, so the
        answer is final once k covers every row, or the k-th score + slack is below the threshold, or top_k
        persons are found and the last beats k-th + slack. Otherwise k widens; past GPU_MAX_K the host scores
        the query (the device cannot select more)."""
        # FAISS GPU's GEMM is full float32 (its cuBLAS handle disallows reduced precision: no TF32), so the
        # BLAS error bound holds for device scores too.
        slack = score_slack(self.dim)
        while True:
            found = rows >= 0
            scores, rows = scores[found], rows[found]
            ceiling = None if k >= self._n or len(rows) == 0 else float(scores[-1]) + slack
            candidates = rows[scores >= threshold - slack]
            exact = exact_scores(self._vectors[candidates], query)
            passing = exact >= threshold
            candidates, exact = candidates[passing], exact[passing]
            order = rank_order(exact, [self._face_ids[row] for row in candidates.tolist()])
            picked = _best_per_person(order, self._person_of_row[candidates], top_k)
            if ceiling is None or ceiling < threshold or (len(picked) >= top_k and float(exact[picked[-1]]) > ceiling):
                return self._matches(candidates[picked], exact[picked])
            if k >= GPU_MAX_K:
                return self._top_persons(self._vectors[: self._n] @ query, query, top_k, threshold)
            k = min(self._n, GPU_MAX_K, k * 4)
            found_scores, found_rows = flat.search(query[None], k)
            scores, rows = found_scores[0], found_rows[0]

    # ------------------------------------------------------------------ centroids

    def _mark_centroids_stale(self, codes: np.ndarray) -> None:
        if self._centroids is not None:
            self._stale_centroids.update(np.unique(codes).tolist())

    def centroid(self, person_id: str) -> np.ndarray | None:
        """L2-normalised mean of the person's current faces, or None if they have none."""
        code = self._code_of_person.get(person_id)
        if code is None or self._faces_per_person[code] == 0:
            return None
        return self._centroid_of(code)

    def person_vectors(self, person_id: str) -> np.ndarray:
        """The person's current face vectors [faces, dim] (empty when unknown or all removed)."""
        code = self._code_of_person.get(person_id)
        if code is None:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._vectors[: self._n][self._person_of_row[: self._n] == code]

    def _centroid_of(self, code: int) -> np.ndarray:
        total = self._vectors[: self._n][self._person_of_row[: self._n] == code].sum(axis=0, dtype=np.float64)
        norm = np.linalg.norm(total)
        return (total / norm).astype(np.float32) if norm > 0 else np.zeros(self.dim, dtype=np.float32)

    def _fresh_centroids(self) -> np.ndarray:
        persons = len(self._person_ids)
        if self._centroids is None or len(self._centroids) != persons or len(self._stale_centroids) > 64:
            order = np.argsort(self._person_of_row[: self._n], kind="stable")
            codes = self._person_of_row[: self._n][order]
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
            sums = np.add.reduceat(self._vectors[: self._n][order], starts, axis=0) if self._n else np.empty((0, self.dim))
            centroids = np.zeros((persons, self.dim), dtype=np.float32)
            centroids[codes[starts]] = sums / np.linalg.norm(sums, axis=1, keepdims=True)
            self._centroids = centroids
        else:
            for code in self._stale_centroids:
                self._centroids[code] = self._centroid_of(code) if self._faces_per_person[code] else 0.0
        self._stale_centroids.clear()
        return self._centroids

    def search_centroids(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[tuple[str, float]]]:
        """For each query, up to top_k (person_id, similarity) by centroid similarity >= threshold."""
        unit = _normalised(np.atleast_2d(queries), self.dim)
        if self._rejection_ids:
            vetoes = self._vetoes(unit, threshold)
            found = self._search_centroids(unit, top_k + max(len(v) for v in vetoes), threshold)
            return [[(p, sim) for p, sim in matches if sim > veto.get(p, -np.inf)][:top_k]
                    for matches, veto in zip(found, vetoes)]
        return self._search_centroids(unit, top_k, threshold)

    def _search_centroids(self, unit: np.ndarray, top_k: int, threshold: float) -> list[list[tuple[str, float]]]:
        centroids = self._fresh_centroids()
        scores = centroids @ unit.T
        scores[self._faces_per_person[: len(centroids)] == 0] = -np.inf  # persons whose faces are all gone
        results = []
        for column in scores.T:
            above = np.flatnonzero(column >= threshold)
            if above.size > top_k:
                above = above[np.argpartition(column[above], above.size - top_k)[above.size - top_k :]]
            above = above[np.argsort(-column[above], kind="stable")]
            results.append([(self._person_ids[code], float(column[code])) for code in above.tolist()])
        return results
