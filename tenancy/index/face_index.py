"""`FaceIndex`: a shard's decrypted faces in memory, searched by the exact, ANN or GPU tier, with rejections and
per-person centroids (the tiers and their guarantees: the package's docstring)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import faiss
import numpy as np

from tenancy.index.ann import (
    ANN_DROP_FRACTION,
    ANN_MAX_CANDIDATES,
    ANN_MIN_CANDIDATES,
    ANN_TOMBSTONE_REBUILD_FRACTION,
    ANN_TRAIN_SAMPLE,
    AnnTier,
)
from tenancy.index.gpu import GPU_MAX_K, GPU_MIN_CANDIDATES, gpu_flat_index
from tenancy.index.scoring import (
    Match,
    best_per_person,
    exact_scores,
    normalised,
    rank_order,
    score_slack,
)

# Candidates fetched per wanted person before person de-duplication; widened x4 while not enough.
OVERFETCH = 4
# Bound the [n, q] score matrix of a batched exact search to ~256 MB.
SCORE_BLOCK_ELEMENTS = 64 * 1024 * 1024
PYTHON_ID_BYTES = sys.getsizeof("0" * 32) + 8 + 100  # str object + list slot + dict entry, approx.


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
        self._ann: AnnTier | None = None
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
        unit = normalised(vectors, self.dim, out=self._vectors[start:stop])
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
        unit = normalised(np.asarray(vectors, np.float32).reshape(-1, self.dim)[fresh], self.dim)
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
        unit = normalised(np.atleast_2d(query), self.dim)[0]
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
            if self._n < self.ann_min_faces * ANN_DROP_FRACTION:
                self._ann = None
                self._ann_label_of_row[: self._n] = -1
            elif self._ann.tombstones > ANN_TOMBSTONE_REBUILD_FRACTION * self._ann.index.ntotal:
                self.rebuild_ann()

    def rebuild_ann(self) -> None:
        """(Re)train and fill the ANN tier from the current rows, dropping tombstones."""
        rows = self._vectors[: self._n]
        sample = rows if self._n <= ANN_TRAIN_SAMPLE else rows[np.random.default_rng(0).choice(self._n, ANN_TRAIN_SAMPLE, replace=False)]
        ann = AnnTier(self.dim, sample)
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
        total += self._faces_per_person.nbytes + PYTHON_ID_BYTES * (self._n + len(self._person_ids))
        if self._ann is not None:
            total += self._ann.memory_bytes()
        if self._centroids is not None:
            total += self._centroids.nbytes
        total += self._rejection_vectors.nbytes + self._rejection_codes.nbytes + PYTHON_ID_BYTES * len(self._rejection_ids)
        return total

    # ------------------------------------------------------------------ face search

    def search(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        """For each query, up to top_k persons (best face each) with similarity >= threshold, best first."""
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        unit = normalised(np.atleast_2d(queries), self.dim)
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
        block = max(1, SCORE_BLOCK_ELEMENTS // self._n)
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
        fetch = top_k * OVERFETCH
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
            picked = best_per_person(order, self._person_of_row[candidates], top_k)
            if ceiling is None or (len(picked) >= top_k and float(exact[picked[-1]]) > ceiling):
                return self._matches(candidates[picked], exact[picked])
            fetch *= 4

    def _search_ann(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        assert self._ann is not None
        results: list[list[Match]] = []
        fetch = max(ANN_MIN_CANDIDATES, top_k * OVERFETCH)
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
            best = best_per_person(order, self._person_of_row, top_k)
            if len(best) >= top_k or not passing.all() or len(rows) >= self._n:
                return self._matches(best, self._vectors[best] @ query)
            if fetch >= ANN_MAX_CANDIDATES:
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
        k = min(self._n, GPU_MAX_K, max(GPU_MIN_CANDIDATES, top_k * OVERFETCH))
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
            picked = best_per_person(order, self._person_of_row[candidates], top_k)
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
        unit = normalised(np.atleast_2d(queries), self.dim)
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
