"""A model migration's batch, done inside the tenant's shard actor: kept crops decrypted, embedded by the target
pack's Embedder, and the vectors sealed into the shadow table, all without a decrypted crop or vector going
through Ray's object store (issue 23 §7).

Why here: Ray puts any message (argument or return value) over `max_direct_call_object_size` (100 KiB by
default) into the object store, and the object store spills to disk under pressure, in clear. A batch of
crops (37 KiB each at 112 x 112) or of their vectors handed between the TenantSupervisor, the Embedder and the actor
crossed it. Now the actor that holds the keys decrypts the crops where they are used, sends the Embedder
messages of a few crops each, small enough to be inlined in the call itself, gets the vectors back inline
(a few KiB), and seals them before anything leaves. Only counts come out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

# Ray's inline limit (its default, or the operator's RAY_max_direct_call_object_size), less room for the pickled
# array's header and the call's other arguments.
INLINE_LIMIT_BYTES = int(os.environ.get("RAY_max_direct_call_object_size", 100 * 1024))
MESSAGE_BYTES = INLINE_LIMIT_BYTES - 8 * 1024


class CropTooLarge(ValueError):
    """A kept crop bigger than one inline message: refused rather than sent through the object store."""


def inline_chunks(crops: np.ndarray, budget: int = MESSAGE_BYTES) -> Iterator[np.ndarray]:
    """`crops` [n, H, W, 3] in runs of as many as fit in `budget` bytes (at least one each, or CropTooLarge)."""
    per_crop = int(np.prod(crops.shape[1:])) * crops.itemsize
    if per_crop > budget:
        raise CropTooLarge(f"a kept crop is {per_crop} bytes, over the {budget} bytes Ray sends inline")
    step = budget // per_crop
    for start in range(0, len(crops), step):
        yield np.ascontiguousarray(crops[start:start + step])


def next_batch(store, ciphers, model: str, dim: int, limit: int, embedder: Any) -> dict:
    """Embed and seal up to `limit` faces lacking a shadow vector for `model`. `ciphers`: the actor's record
    ciphers by key version (`get(version)`, `current()`); `embedder`: the target pack's Embedder handle, callable
    from this (synchronous) actor. Returns {embedded, stored, missing, missing_without_crop} (counts only;
    `missing`: faces lacking a shadow vector before this batch)."""
    face_ids, missing, no_crop = store.shadow_missing(model, limit)
    crops = store.load_crops(face_ids, ciphers.get)
    face_ids = [f for f in face_ids if f in crops]
    stored = 0
    if face_ids:
        stacked = np.stack([crops.pop(f) for f in face_ids])
        # Every message is sent before the first answer is awaited: the Embedder batches them.
        responses = [embedder.embed.remote(chunk) for chunk in inline_chunks(stacked)]
        del stacked
        vectors = np.concatenate([np.asarray(r.result(), np.float32) for r in responses])
        if vectors.shape != (len(face_ids), dim):
            raise ValueError(f"the target Embedder gave vectors of shape {vectors.shape}, expected ({len(face_ids)}, {dim})")
        stored = store.add_shadow(model, dim, face_ids, vectors, ciphers.current())
    return {"embedded": len(face_ids), "stored": stored, "missing": missing, "missing_without_crop": no_crop}
