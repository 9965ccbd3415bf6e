"""A tenant's unknowns in memory, for re-identification: bounded, and searched in one matrix product.

Every kept sample of every unknown embedded by the cameras' model is a row of one float32 matrix; a sighting's
vector is compared with all of them at once (`rows @ vector`), and the best row names the unknown: the same
answer as comparing with each unknown's samples in turn (max over its samples, then over unknowns).

The gallery holds at most `capacity` unknowns (settings `streams.max_unknowns_per_tenant`): a new stranger beyond
it evicts the stalest (least recently seen) unknown, whose vectors the caller deletes from events.db. Its
events stay; the id is just no longer recognised (as after retention). Unknowns embedded by another model (a
cameras' model since replaced) are kept for listing and refusals, never matched: their similarities would mean
nothing.

Memory: rows x dim x 4 bytes; at most 8 samples per unknown (the newest), so 16 KiB per unknown at 512-d.
"""

from __future__ import annotations

import numpy as np

from streams.store import MAX_UNKNOWN_SAMPLES

_GROW_ROWS = 1024


class UnknownGallery:
    def __init__(self, model: str, capacity: int) -> None:
        self.model, self.capacity = model, capacity  # model: the cameras' model; only its vectors are matched
        self._meta: dict[str, dict] = {}  # unknown id -> {unknown_id, created_at, last_seen, model}
        self._rows_of: dict[str, list[int]] = {}  # unknown id -> its rows, oldest first (matchable unknowns)
        self._other: dict[str, np.ndarray] = {}  # unknown id -> vectors (another model's: kept, never matched)
        self._matrix: np.ndarray | None = None  # (allocated rows, dim)
        self._owner = np.empty(0, dtype=object)  # row -> unknown id, None when free
        self._free: list[int] = []
        self._used = 0  # rows [0, _used) have been handed out at least once

    # ---- the mapping the service and the promotion read ---------------------------------------------------
    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, unknown_id: str) -> bool:
        return unknown_id in self._meta

    def get(self, unknown_id: str) -> dict | None:
        """{unknown_id, created_at, last_seen, model, samples, vectors}, or None."""
        meta = self._meta.get(unknown_id)
        if meta is None:
            return None
        vectors = self._other[unknown_id] if unknown_id in self._other else self._matrix[self._rows_of[unknown_id]]
        return {**meta, "samples": len(vectors), "vectors": vectors.copy()}

    def values(self) -> list[dict]:
        return [self.get(unknown_id) for unknown_id in self._meta]

    def pop(self, unknown_id: str, default=None) -> dict | None:
        entry = self.get(unknown_id)
        if entry is None:
            return default
        del self._meta[unknown_id]
        self._other.pop(unknown_id, None)
        for row in self._rows_of.pop(unknown_id, ()):
            self._release(row)
        return entry

    # ---- loading and sightings ----------------------------------------------------------------------------
    def put(self, unknown_id: str, vectors: np.ndarray, created_at: float, last_seen: float, model: str) -> None:
        """An unknown as stored (its newest MAX_UNKNOWN_SAMPLES vectors), replacing any it had."""
        self.pop(unknown_id)
        vectors = np.asarray(vectors, np.float32).reshape(-1, np.shape(vectors)[-1])[-MAX_UNKNOWN_SAMPLES:]
        self._meta[unknown_id] = {"unknown_id": unknown_id, "created_at": created_at, "last_seen": last_seen, "model": model}
        if model != self.model:
            self._other[unknown_id] = vectors.copy()
            return
        self._rows_of[unknown_id] = [self._store(unknown_id, v) for v in vectors]

    def best(self, vector: np.ndarray) -> tuple[str | None, float]:
        """(unknown id, cosine similarity) of the unknown closest to `vector` (unit length), or (None, -inf)."""
        if self._matrix is None or not self._rows_of:
            return None, float("-inf")
        similarities = self._matrix[:self._used] @ np.asarray(vector, np.float32)
        if self._free:  # rows given back: never the answer
            similarities[self._free] = -np.inf
        row = int(np.argmax(similarities))
        return self._owner[row], float(similarities[row])

    def seen(self, unknown_id: str, vector: np.ndarray, seen_at: float) -> None:
        """The unknown was seen again: `vector` becomes its newest sample (the oldest goes past the limit)."""
        rows = self._rows_of[unknown_id]
        if len(rows) >= MAX_UNKNOWN_SAMPLES:
            self._release(rows.pop(0))
        rows.append(self._store(unknown_id, np.asarray(vector, np.float32)))
        meta = self._meta[unknown_id]
        meta["last_seen"] = max(meta["last_seen"], seen_at)

    def evictions(self, keep: set[str] = frozenset(), room: int = 1) -> list[str]:
        """The stalest unknowns to remove so that `room` more fit within the capacity, none of `keep` (promotions
        under way). Not removed here: the caller deletes them from the file, then pops them."""
        excess = len(self._meta) + room - self.capacity
        if excess <= 0:
            return []
        candidates = [(m["last_seen"], unknown_id) for unknown_id, m in self._meta.items() if unknown_id not in keep]
        if excess == 1:
            return [min(candidates)[1]] if candidates else []
        return [unknown_id for _, unknown_id in sorted(candidates)[:excess]]

    # ---- rows ------------------------------------------------------------------------------------------------
    def _store(self, unknown_id: str, vector: np.ndarray) -> int:
        if self._matrix is None:
            self._matrix = np.zeros((_GROW_ROWS, vector.shape[-1]), np.float32)
            self._owner = np.full(_GROW_ROWS, None, dtype=object)
        if self._free:
            row = self._free.pop()
        else:
            if self._used == len(self._matrix):
                more = len(self._matrix)  # doubled: appends stay amortised O(1)
                self._matrix = np.concatenate([self._matrix, np.zeros((more, self._matrix.shape[1]), np.float32)])
                self._owner = np.concatenate([self._owner, np.full(more, None, dtype=object)])
            row, self._used = self._used, self._used + 1
        self._matrix[row] = vector
        self._owner[row] = unknown_id
        return row

    def _release(self, row: int) -> None:
        self._owner[row] = None
        self._matrix[row] = 0.0
        self._free.append(row)
