"""Unknowns at size (issue 26 §3): one matrix product finds the same unknown as comparing with each in turn,
the gallery holds at most the tenant's cap and evicts the least recently seen, and the StreamService's
re-identification keeps events.db to the cap (vectors of the evicted deleted, their events kept)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from kms import KeyManager
from securegate.settings import Settings
from streams.service import StreamService
from streams.store import MAX_UNKNOWN_SAMPLES
from streams.unknowns import UnknownGallery

DIM, MODEL = 32, "test/32"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def one_by_one(entries: dict[str, np.ndarray], vector: np.ndarray) -> tuple[str | None, float]:
    """Re-identification as it was: each unknown's samples compared in turn, the best unknown kept."""
    best_id, best = None, -2.0
    for unknown_id, vectors in entries.items():
        similarity = float(np.max(vectors @ vector))
        if similarity > best:
            best_id, best = unknown_id, similarity
    return best_id, best


def test_one_product_finds_what_comparing_each_unknown_finds_through_sightings_and_removals():
    rng = np.random.default_rng(1)
    gallery, truth = UnknownGallery(MODEL, capacity=10_000), {}
    for i in range(600):
        vectors = unit(rng.standard_normal((int(rng.integers(1, MAX_UNKNOWN_SAMPLES + 1)), DIM)))
        gallery.put(f"unk_{i}", vectors, 0.0, float(i), MODEL)
        truth[f"unk_{i}"] = vectors
    for step in range(400):
        probe = unit(rng.standard_normal(DIM))
        found, similarity = gallery.best(probe)
        expected, best = one_by_one(truth, probe)
        assert found == expected and similarity == pytest.approx(best, abs=1e-5)
        if step % 3 == 0:  # seen again: its newest sample, the oldest beyond 8 dropped
            gallery.seen(found, probe, 1000.0 + step)
            truth[found] = np.vstack([truth[found], probe[None]])[-MAX_UNKNOWN_SAMPLES:]
        elif step % 3 == 1:  # promoted or expired: gone, its rows given to the next
            gallery.pop(found)
            del truth[found]
        else:
            new = unit(rng.standard_normal((2, DIM)))
            gallery.put(f"new_{step}", new, 0.0, 2000.0 + step, MODEL)
            truth[f"new_{step}"] = new
    assert len(gallery) == len(truth)
    for unknown_id, vectors in truth.items():
        np.testing.assert_array_equal(gallery.get(unknown_id)["vectors"], vectors)


def test_another_models_unknowns_are_kept_and_never_matched():
    gallery = UnknownGallery(MODEL, capacity=10)
    vector = unit(np.ones(DIM))
    gallery.put("unk_old", vector[None], 0.0, 5.0, "older-model/32")
    assert gallery.best(vector) == (None, float("-inf"))
    assert gallery.get("unk_old")["model"] == "older-model/32" and len(gallery) == 1
    gallery.put("unk_new", vector[None], 0.0, 6.0, MODEL)
    assert gallery.best(vector)[0] == "unk_new"


def test_the_cap_evicts_the_least_recently_seen_but_never_one_being_promoted():
    gallery = UnknownGallery(MODEL, capacity=3)
    rng = np.random.default_rng(2)
    for i, last_seen in enumerate([30.0, 10.0, 20.0]):
        gallery.put(f"unk_{i}", unit(rng.standard_normal((1, DIM))), 0.0, last_seen, MODEL)
    assert gallery.evictions(room=0) == []
    assert gallery.evictions() == ["unk_1"]  # one more would exceed 3: the stalest goes
    assert gallery.evictions(keep={"unk_1"}) == ["unk_2"]
    gallery.seen("unk_1", unit(rng.standard_normal(DIM)), 40.0)
    assert gallery.evictions() == ["unk_2"]
    assert gallery.evictions(room=2) == ["unk_2", "unk_0"]


# ------------------------------------------------------------------------- through the StreamService
class _Remote:
    """`handle.method.remote(...)` of a Serve handle, standing in for it: awaits the real method here."""

    def __init__(self, method) -> None:
        self.method = method

    async def remote(self, *args):
        return self.method(*args)


class KeyServiceStandIn:
    """Stands in for the KeyService deployment handle around the real kms.KeyManager (local root key)."""

    def __init__(self, manager: KeyManager) -> None:
        self.data_key = _Remote(manager.data_key)


class TenantsStandIn:
    """Stands in for the TenantSupervisor handle: the one tenant's record (threshold from the settings)."""

    class _Tenant:
        class settings:  # noqa: N801 - the shape of a tenant's settings the service reads
            default_threshold = 0.5

    def __init__(self) -> None:
        self.tenant = _Remote(lambda tenant_id: self._Tenant())


class EmbedderStandIn:
    """Stands in for the Embedder handle: only its model id is asked (the cameras' model)."""

    def __init__(self) -> None:
        self.info = _Remote(lambda: {"name": "test", "dim": DIM, "model_id": MODEL, "default_threshold": 0.5})


def test_reidentification_through_the_service_keeps_the_file_to_the_cap(tmp_path: Path):
    """A StreamService over a real events.db and the real key hierarchy, Ray's handles stood in for: more strangers
    than the cap; the least recently seen unknowns leave the file (their events stay), a stranger seen again is
    still recognised, and a service restarted over the same file knows the same unknowns."""
    manager = KeyManager({"provider": "local", "root_key_path": str(tmp_path / "root.key")}, str(tmp_path / "keystore.db"))
    manager.create_tenant("t1")
    settings = Settings.model_validate({"data_dir": str(tmp_path), "streams": {"max_unknowns_per_tenant": 4}})
    rng = np.random.default_rng(3)
    strangers = unit(rng.standard_normal((7, DIM)))

    def service() -> StreamService:
        return StreamService(str(tmp_path), KeyServiceStandIn(manager), TenantsStandIn(), None, EmbedderStandIn(), None, settings)

    async def sighting(svc: StreamService, stranger: int, at: float) -> int:
        noisy = unit(strangers[stranger] + 0.05 * rng.standard_normal(DIM))
        return await svc.record_sighting("t1", stream_id, "unknown", {
            "vector": noisy, "first_seen": at, "last_seen": at + 1, "track_length": 3, "first_offset_s": 0.0,
            "last_offset_s": 1.0, "best_similarity": None})

    async def scenario() -> tuple[dict, dict]:
        nonlocal stream_id
        svc = service()
        keys = await svc.event_keys("t1", read=False)
        stream_id = svc.store("t1").add_stream(keys.current, "door", "", {"fps": 5, "cooldown_s": 0})
        seqs = {}
        for i in range(6):  # strangers 0..5, one a minute; stranger 0 comes back at the end of each
            seqs[i] = await sighting(svc, i, 1000.0 + 60 * i)
            await sighting(svc, 0, 1030.0 + 60 * i)
        ids = {i: (await svc.events("t1", seqs[i] - 1, 1))[0]["unknown_id"] for i in seqs}
        listed = {u["unknown_id"] for u in await svc.list_unknowns("t1")}
        stored = set(svc.store("t1").unknowns(await svc.event_keys("t1")))
        assert len(set(ids.values())) == 6  # six strangers, six ids
        assert listed == stored == {ids[0], ids[3], ids[4], ids[5]}  # 1 and 2 were the least recently seen
        assert len(await svc.events("t1", 0, 100)) == 12  # every event kept, the evicted strangers' too
        assert await svc.events("t1", 0, 100, person=ids[1])
        svc.store("t1").close()

        again = service()  # a restarted StreamSupervisor: the same unknowns, from the file
        seq = await sighting(again, 0, 2000.0)
        assert (await again.events("t1", seq - 1, 1))[0]["unknown_id"] == ids[0]
        assert {u["unknown_id"] for u in await again.list_unknowns("t1")} == listed
        seq = await sighting(again, 6, 2100.0)  # a seventh stranger: the stalest (3) goes
        assert {u["unknown_id"] for u in await again.list_unknowns("t1")} == \
            {ids[0], ids[4], ids[5], (await again.events("t1", seq - 1, 1))[0]["unknown_id"]}
        again.store("t1").close()
        return ids, listed

    stream_id = None
    asyncio.run(scenario())
    manager.close()
