"""Sharded tenant indexes: a tenant's faces split over several shard actors by face id.

(a) Library level, no Ray: the same identity-clustered data in 1 FaceIndex vs 2 and 4 shard FaceIndexes
    merged with `merge_search` gives identical answers (persons, faces, similarities to the bit).
(b) Through Ray: a tenant with shards=3 behind the TenantSupervisor's gallery operations (tenancy/gallery.py), against the
    session's KeyService: search equals the unsharded answer, deletes reach the owning shard, re-sharding
    happens at activation, and a SIGKILLed shard (or primary) heals on the next search with nothing lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import numpy as np
import pytest

from tenancy.index import FaceIndex, Match, merge_search
from tenancy.store import shard_of


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(persons: int, dim: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """Persons with 1-6 faces each around their own centre (cosine ~0.8 to it); uuid4-like hex face ids."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((persons, dim)))
    counts = rng.integers(1, 7, persons)
    person_of = np.repeat(np.arange(persons), counts)
    vectors = unit(centres[person_of] + 0.75 * unit(rng.standard_normal((len(person_of), dim))))
    face_ids = [rng.bytes(16).hex() for _ in person_of]
    return face_ids, [f"person-{p}" for p in person_of], vectors


def build_shards(face_ids, person_ids, vectors, shards: int, seed: int) -> list[FaceIndex]:
    """Per-shard indexes, each filled in its own (shuffled) order: layout must not matter."""
    order = np.random.default_rng(seed).permutation(len(face_ids))
    out = []
    for k in range(shards):
        rows = [i for i in order if shard_of(face_ids[i], shards) == k]
        out.append(FaceIndex.build([face_ids[i] for i in rows], [person_ids[i] for i in rows], vectors[rows]))
    return out


def as_tuples(results: list[list[Match]]) -> list[list[tuple]]:
    return [[(m.person_id, m.face_id, m.similarity) for m in per_face] for per_face in results]


@pytest.mark.parametrize("dim", [64, 512])
def test_sharded_search_is_identical_to_unsharded(dim: int) -> None:
    face_ids, person_ids, vectors = clustered(persons=500, dim=dim, seed=dim)
    single = FaceIndex.build(face_ids, person_ids, vectors)
    layouts = {n: build_shards(face_ids, person_ids, vectors, n, seed=n) for n in (2, 4)}
    # The data really spreads persons over shards (else the merge would be trivial).
    spread = Counter(p for f, p in {(shard_of(f, 4), p) for f, p in zip(face_ids, person_ids)})
    assert sum(1 for c in spread.values() if c > 1) > 150

    rng = np.random.default_rng(1)
    sources = rng.choice(len(face_ids), 40, replace=False)
    probes = unit(0.7 * vectors[sources] + 0.714 * unit(rng.standard_normal((40, dim))))  # cosine ~0.7
    strangers = unit(rng.standard_normal((10, dim)))
    queries = np.vstack([probes, strangers])
    nonempty = 0
    for top_k in (1, 4, 40):
        for threshold in (-1.0, 0.3, 0.6):
            expected = as_tuples(single.search(queries, top_k, threshold))
            nonempty += sum(1 for e in expected if e)
            for n, shards in layouts.items():
                merged = merge_search([s.search(queries, top_k, threshold) for s in shards], top_k)
                assert as_tuples(merged) == expected, (n, top_k, threshold)
    assert nonempty > 250
    # Top-1 of the clustered probes is their source person (the data is what the benchmark uses).
    top1 = [m[0].person_id for m in single.search(probes, 1, 0.2)]
    assert np.mean([t == person_ids[s] for t, s in zip(top1, sources)]) > 0.95


def brute_force_with_rejections(face_ids, person_ids, vectors, rejections: dict[str, np.ndarray], query, top_k, threshold):
    """The rule spelled out: per person max cos(q, F) and max cos(q, R); a candidate passes the threshold and
    beats every rejection of theirs; ranked by (similarity desc, face id asc)."""
    scores = vectors @ query
    best: dict[str, tuple[float, str]] = {}
    for face_id, person_id, score in zip(face_ids, person_ids, scores.tolist()):
        if person_id not in best or (-score, face_id) < (-best[person_id][0], best[person_id][1]):
            best[person_id] = (score, face_id)
    kept = [(p, f, s) for p, (s, f) in best.items()
            if s >= threshold and (p not in rejections or s > float(np.max(rejections[p] @ query)))]
    return sorted(kept, key=lambda t: (-t[2], t[1]))[:top_k]


def test_rejections_on_synthetic_clusters_match_the_rule_unsharded_and_sharded() -> None:
    """Stand-in data (synthetic identity clusters, as the test above): persons given "not this person" examples
    close to another person's faces answer as the brute-force rule says, in one index and merged from 2 and 4
    shards that each hold every rejection."""
    dim = 64
    face_ids, person_ids, vectors = clustered(persons=300, dim=dim, seed=5)
    rng = np.random.default_rng(9)
    sources = rng.choice(len(face_ids), 40, replace=False)
    probes = unit(0.7 * vectors[sources] + 0.714 * unit(rng.standard_normal((40, dim))))
    # The source person of half the probes gets two rejections: one a noisy copy of the probe (the look-alike
    # case: it vetoes that person for this probe), one near an unrelated face (it vetoes nothing here).
    owners = sorted({person_ids[i] for i in sources[:20]})
    near = {person_ids[i]: probes[k] for k, i in enumerate(sources[:20])}
    rejections = {p: unit(np.vstack([near[p], vectors[rng.integers(len(vectors))]]) + 0.3 * unit(rng.standard_normal((2, dim))))
                  for p in owners}
    rejection_ids = [f"r-{p}-{i}" for p in owners for i in range(2)]
    rejection_persons = [p for p in owners for _ in range(2)]
    rejection_vectors = np.vstack([rejections[p] for p in owners])

    single = FaceIndex.build(face_ids, person_ids, vectors)
    layouts = {n: build_shards(face_ids, person_ids, vectors, n, seed=n) for n in (2, 4)}
    for index in [single, *(s for shards in layouts.values() for s in shards)]:
        index.add_rejections(rejection_ids, rejection_persons, rejection_vectors)
    vetoed = 0
    for top_k in (1, 5):
        for threshold in (0.2, 0.4):
            got = single.search(probes, top_k, threshold)
            for query, answer in zip(probes, got):
                expected = brute_force_with_rejections(face_ids, person_ids, vectors, rejections, query, top_k, threshold)
                assert [(m.person_id, m.face_id) for m in answer] == [(p, f) for p, f, _ in expected]
                assert np.allclose([m.similarity for m in answer], [s for _, _, s in expected], atol=1e-5)
                vetoed += brute_force_with_rejections(face_ids, person_ids, vectors, {}, query, top_k, threshold) != expected
            for n, shards in layouts.items():
                merged = merge_search([s.search(probes, top_k, threshold) for s in shards], top_k)
                assert as_tuples(merged) == as_tuples(got), (n, top_k, threshold)
    assert vetoed > 10  # the rejections did veto matches (else this would test nothing)


def test_identical_after_removals_and_on_exact_ties() -> None:
    face_ids, person_ids, vectors = clustered(persons=300, dim=64, seed=5)
    # Exact ties: the same vector enrolled for two persons, and twice for one person.
    face_ids += ["0" * 31 + "a", "f" * 31 + "b", "7" * 31 + "c"]
    person_ids += ["twin-a", "twin-b", "twin-a"]
    vectors = np.vstack([vectors, vectors[:1], vectors[:1], vectors[:1]])
    single = FaceIndex.build(face_ids, person_ids, vectors)
    shards = build_shards(face_ids, person_ids, vectors, 4, seed=9)
    queries = np.vstack([vectors[:1], unit(np.random.default_rng(2).standard_normal((20, 64)))])

    def check():
        for top_k in (1, 2, 5, 40):
            for threshold in (-1.0, 0.2):
                expected = as_tuples(single.search(queries, top_k, threshold))
                assert as_tuples(merge_search([s.search(queries, top_k, threshold) for s in shards], top_k)) == expected

    check()
    tie = single.search(vectors[:1], 3, 0.99)[0]
    assert [m.similarity for m in tie] == [tie[0].similarity] * 3  # three persons at the same score,
    assert [m.face_id for m in tie] == sorted(m.face_id for m in tie)  # ranked by face id,
    assert tie[0].person_id == "twin-a" and tie[0].face_id == "0" * 31 + "a"  # each by its smallest-id best face
    gone = face_ids[::7]
    single.remove(gone)
    for s in shards:
        s.remove(gone)  # unknown ids are ignored: every shard can be told everything
    check()


# ---------------------------------------------------------------------------------------------- with Ray
DIM = 128
MODEL = "mobilefacenet_arcface_w128/128"


def shard_actor(tenant_id: str, k: int):
    import ray

    from tenancy.actors import NAMESPACE, actor_name

    return ray.get_actor(actor_name(tenant_id, k), namespace=NAMESPACE)


def test_sharded_tenant_through_the_service(app, tmp_path) -> None:
    import ray
    from ray import serve

    from tenancy import operations as op
    from tenancy.reads import ShardedCentroidSearch
    from tenancy.service import TenantService
    from tests.galleries import add_vector, service_gallery

    keys = serve.get_deployment_handle("KeyService", app_name="securegate")
    service = TenantService(str(tmp_path), keys, admin_token="test-admin", shard_actor_options={"num_cpus": 0.1})
    gallery = service_gallery(service)
    rng = np.random.default_rng(11)
    centres = unit(rng.standard_normal((30, DIM)))

    async def scenario() -> None:
        tenant, _ = await service.create_tenant("big", MODEL, DIM, {"shards": 3})
        tid = tenant.tenant_id
        caller = op.InternalCaller(tid, "internal")
        persons, faces = [], {}  # faces: face_id -> (person_id, vector)
        for i, centre in enumerate(centres):
            pid = (await gallery.create_person(op.CreatePerson(caller, f"ext-{i}", {}))).person_id
            persons.append(pid)
            for v in unit(centre + 0.75 * unit(rng.standard_normal((4, DIM)))):
                faces[await add_vector(gallery, tenant, pid, v)] = (pid, v)
        external = {pid: f"ext-{i}" for i, pid in enumerate(persons)}
        queries = unit(np.vstack([centres[:6] + 0.5 * unit(rng.standard_normal((6, DIM))), rng.standard_normal((2, DIM))]))

        def expected(top_k: int, threshold: float) -> list[list[op.Match]]:
            ids = sorted(faces)
            reference = FaceIndex.build(ids, [faces[f][0] for f in ids], np.stack([faces[f][1] for f in ids]))
            return [[op.Match(m.person_id, external[m.person_id], m.face_id, round(float(m.similarity), 6)) for m in per_face]
                    for per_face in reference.search(queries, top_k, threshold)]

        async def search(top_k=5, threshold=0.2):
            return (await gallery.search(op.Search(caller, queries, MODEL, top_k, threshold))).faces

        async def primary():
            return (await service.shard_set(service.registry.get(tid))).primary

        async def shard_counts(layout_shards: int) -> list[int]:
            infos = [await shard_actor(tid, k).info.remote() for k in range(layout_shards)]
            return [i["faces"] for i in infos]

        def owned(n: int) -> list[int]:
            return [sum(1 for f in faces if shard_of(f, n) == k) for k in range(n)]

        assert await shard_counts(3) == owned(3) and min(owned(3)) > 0
        for top_k, threshold in ((1, 0.2), (5, 0.2), (10, -1.0), (3, 0.5)):
            assert await search(top_k, threshold) == expected(top_k, threshold)
        assert all(len(per_face) == 5 for per_face in await search(5, -1.0))
        # Each search's audit entry was appended by the primary in the search's own call, with its counts.
        searches = [e for e in service.audit_events(tid, 0, 10_000) if e["action"] == "search"]
        assert len(searches) == 5 and all(e["outcome"] == "ok" and e["counts"]["faces"] == len(queries) for e in searches)
        info = await gallery.info(tid)
        assert info["faces"] == len(faces) and info["shards"] == 3

        # verify_person merges per-shard best faces and centroid partial sums (the primary's one call).
        who = persons[0]
        mine = np.stack([v for p, v in faces.values() if p == who])
        verdict = await (await primary()).verify_person.remote(queries[0], who)
        centroid = mine.sum(axis=0, dtype=np.float64)
        assert verdict["faces"] == len(mine)
        assert verdict["best_face_similarity"] == pytest.approx(float(np.max(mine @ queries[0])), abs=1e-6)
        assert verdict["centroid_similarity"] == pytest.approx(float(centroid / np.linalg.norm(centroid) @ queries[0]), abs=1e-5)

        # Deletes reach the owning shard: a face, then a person whose faces sit in several shards.
        victim = next(iter(faces))
        await gallery.delete_face(op.DeleteFace(caller, faces[victim][0], victim))
        del faces[victim]
        spread = max(persons, key=lambda p: len({shard_of(f, 3) for f, (q, _) in faces.items() if q == p}))
        await gallery.delete_person(op.DeletePerson(caller, spread))
        faces = {f: pv for f, pv in faces.items() if pv[0] != spread}
        assert await shard_counts(3) == owned(3)
        assert await search(10, -1.0) == expected(10, -1.0)
        assert spread not in {m.person_id for per_face in await search(30, -1.0) for m in per_face}

        # SIGKILL one shard: Ray restarts it, it re-decrypts its rows, the next search is whole again.
        old_pid = await shard_actor(tid, 2).pid.remote()
        os.kill(old_pid, signal.SIGKILL)
        assert await search(10, -1.0) == expected(10, -1.0)
        assert await shard_actor(tid, 2).pid.remote() != old_pid
        assert await shard_counts(3) == owned(3)
        # An enrolment while a shard is down is durable, and searchable once it is back.
        old_pid = await shard_actor(tid, 1).pid.remote()
        os.kill(old_pid, signal.SIGKILL)
        alive = next(i for i, p in enumerate(persons) if p != spread)
        deadline = time.monotonic() + 30
        while True:
            v = unit(centres[alive : alive + 1] + 0.3 * unit(rng.standard_normal((1, DIM))))[0]
            face_id = await add_vector(gallery, tenant, persons[alive], v)
            faces[face_id] = (persons[alive], v)
            if shard_of(face_id, 3) == 1 or time.monotonic() > deadline:
                break
        assert await search(10, -1.0) == expected(10, -1.0)
        # SIGKILL the primary: it comes back, reconciles the shards, nothing is lost.
        primary_pid = await (await primary()).pid.remote()
        os.kill(primary_pid, signal.SIGKILL)
        assert await search(10, -1.0) == expected(10, -1.0)
        assert await (await primary()).pid.remote() != primary_pid

        # Re-sharding at activation: PATCH shards, the next call evicts and re-activates the new layout.
        for n in (1, 2):
            tenant = await service.update_settings(tid, {"shards": n})
            assert await search(10, -1.0) == expected(10, -1.0)
            assert await shard_counts(n) == owned(n)
            assert (await gallery.info(tid))["faces"] == len(faces)
        with pytest.raises(ValueError):
            shard_actor(tid, 2)  # the 3-shard layout's extra actor is gone

        # Centroid search is refused on a sharded tenant (typed error -> 400), and so is the setting.
        with pytest.raises(ShardedCentroidSearch):
            await (await primary()).search.remote(queries, 3, 0.2, "centroid")
        import pydantic

        with pytest.raises(pydantic.ValidationError):
            await service.update_settings(tid, {"match_on": "centroid"})
        await service.delete_tenant(tid)
        with pytest.raises(ValueError):
            shard_actor(tid, 0)

    asyncio.run(scenario())
    assert ray.is_initialized()
