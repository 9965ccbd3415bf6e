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

_GROW = 1024


class UnknownGallery:
    def __init__(self, model: str, capacity: int) -> None:
        self.model, self.capacity = model, capacity  # model: the cameras' model; only its vectors are matched
        self._meta: dict[str, dict] = {}  # unknown id -> {unknown_id, created_at, last_seen, model}
        self._other: dict[str, np.ndarray] = {}  # unknown id -> vectors (another model's: kept, never matched)
        # Unknowns by slot, so that the stalest is found by one argmin: slot -> id, slot -> last seen (inf: free).
        self._slot: dict[str, int] = {}
        self._slot_owner: list[str | None] = []
        self._last_seen = np.empty(0)
        self._free_slots: list[int] = []
        # Samples by row of one matrix: row -> unknown id (None: free); unknown id -> its rows, oldest first.
        self._matrix: np.ndarray | None = None
        self._row_owner: list[str | None] = []
        self._rows_of: dict[str, list[int]] = {}
        self._free_rows: list[int] = []

    # ---- the mapping the service and the promotion read ---------------------------------------------------
    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, unknown_id: str) -> bool:
        return unknown_id in self._meta

    def matrix_bytes(self) -> int:
        """Memory of the samples' matrix (free rows included)."""
        return 0 if self._matrix is None else self._matrix.nbytes

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
        slot = self._slot.pop(unknown_id)
        self._slot_owner[slot], self._last_seen[slot] = None, np.inf
        self._free_slots.append(slot)
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
        if not self._free_slots:  # doubled: appends stay amortised O(1)
            grown = max(_GROW, len(self._last_seen))
            self._last_seen = np.concatenate([self._last_seen, np.full(grown, np.inf)])
            self._free_slots = list(range(len(self._slot_owner) + grown - 1, len(self._slot_owner) - 1, -1))
            self._slot_owner += [None] * grown
        slot = self._slot[unknown_id] = self._free_slots.pop()
        self._slot_owner[slot], self._last_seen[slot] = unknown_id, last_seen
        if model != self.model:
            self._other[unknown_id] = vectors.copy()
        else:
            self._rows_of[unknown_id] = [self._store(unknown_id, v) for v in vectors]

    def best(self, vector: np.ndarray) -> tuple[str | None, float]:
        """(unknown id, cosine similarity) of the unknown closest to `vector` (unit length), or (None, -inf)."""
        if not self._rows_of:
            return None, float("-inf")
        similarities = self._matrix[:len(self._row_owner)] @ np.asarray(vector, np.float32)
        if self._free_rows:  # rows given back: never the answer
            similarities[self._free_rows] = -np.inf
        row = int(np.argmax(similarities))
        return self._row_owner[row], float(similarities[row])

    def seen(self, unknown_id: str, vector: np.ndarray, seen_at: float) -> None:
        """The unknown was seen again: `vector` becomes its newest sample (the oldest goes past the limit)."""
        rows = self._rows_of[unknown_id]
        if len(rows) >= MAX_UNKNOWN_SAMPLES:
            self._release(rows.pop(0))
        rows.append(self._store(unknown_id, np.asarray(vector, np.float32)))
        meta = self._meta[unknown_id]
        meta["last_seen"] = self._last_seen[self._slot[unknown_id]] = max(meta["last_seen"], seen_at)

    def evictions(self, keep: set[str] = frozenset(), room: int = 1) -> list[str]:
        """The stalest unknowns to remove so that `room` more fit within the capacity, none of `keep` (promotions
        under way), stalest first. Not removed here: the caller deletes them from the file, then pops them."""
        kept = [self._slot[k] for k in keep if k in self._slot]
        excess = min(len(self._meta) + room - self.capacity, len(self._meta) - len(kept))
        if excess <= 0:
            return []
        last_seen = self._last_seen.copy()
        last_seen[kept] = np.inf
        slots = np.argpartition(last_seen, excess - 1)[:excess]  # the `excess` least recently seen: O(n)
        return [self._slot_owner[int(s)] for s in slots[np.argsort(last_seen[slots], kind="stable")]]

    # ---- rows ------------------------------------------------------------------------------------------------
    def _store(self, unknown_id: str, vector: np.ndarray) -> int:
        if self._free_rows:
            row = self._free_rows.pop()
        else:
            row = len(self._row_owner)
            if self._matrix is None or row == len(self._matrix):  # doubled
                more = np.zeros((max(_GROW, row), vector.shape[-1]), np.float32)
                self._matrix = more if self._matrix is None else np.concatenate([self._matrix, more])
            self._row_owner.append(None)
        self._matrix[row] = vector
        self._row_owner[row] = unknown_id
        return row

    def _release(self, row: int) -> None:
        self._row_owner[row] = None
        self._matrix[row] = 0.0
        self._free_rows.append(row)
