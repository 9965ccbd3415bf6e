"""The event log at size: a tenant's camera history queried through its blind index vs by opening every event.

    .venv/bin/python benchmarks/events.py                                         # 100K then 1M events, 5K then 50K unknowns
    .venv/bin/python benchmarks/events.py --events 20000 100000 --unknowns 1000 5000   # a quick run

A tenant's events.db per size is written through the real store code (streams.store.StreamStore.add_event: sealed
payloads, blind-index tags; 10K events per transaction so that 1M rows do not take 1M fsyncs), then every size
is timed in turn for `--rounds` rounds (medians kept; a change in the host's load falls on all sizes alike), the
baseline in the same run on the same file:

- attendance for a day (the middle day of the log): `streams.attendance.attendance` vs the code before the
  index (the `--baseline` revision's StreamStore.events with its day filter, then grouped per person as its
  StreamService did: every event of the day opened);
- a person's events (`GET /v1/events?person=`): `StreamStore.events(person=)` vs the baseline's, which opens
  every event of the tenant;
- a person's deletion (their events deleted with them): `delete_events_of` vs the baseline's;
- a sighting's re-identification at the tenant's unknowns (half returning strangers, half new ones, which at
  the cap evict the stalest): `streams.unknowns.UnknownGallery` (one matrix product) vs the loop over every
  unknown that StreamService._reidentify ran before (the matching only: the unknown's write to the file is the
  same in both);
- the key versions a sighting asks for (`StreamStore.key_versions`, on every sighting): index probes vs the
  baseline's UNION over every row;
- then, once: a file of `--migrate` events written by the baseline, opened by this code and tagged.

The baseline store is the `--baseline` revision's streams/store.py (loaded from `git show`, not checked out),
opened on the same file. Both paths' answers are compared (same events, same attendance rows, same unknowns).
Rows are synthetic and shaped like real ones: 10K events a day over 16 cameras, 70 % person_seen (2000
persons) and 30 % unknown_seen, payloads as StreamService writes them; unknowns of 1 to 8 samples of `--dim`
(512: antelopev2) unit vectors. One BLAS thread, as the StreamSupervisor replica has. Growth is each figure at the last
size over the first. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.revisions import module_at  # noqa: E402
from kms.records import RecordCipher  # noqa: E402
from streams.attendance import attendance  # noqa: E402
from streams.event_index import EventKeys  # noqa: E402
from streams.store import MAX_UNKNOWN_SAMPLES, StreamStore  # noqa: E402
from streams.unknowns import UnknownGallery  # noqa: E402

TENANT = "tenant-bench"
EVENTS_PER_DAY = 10_000
PERSONS = 2_000
CAMERAS = [f"cam_{i:016x}" for i in range(16)]
START_DAY = 1_760_000_000.0 - 1_760_000_000.0 % 86400
MODEL = "bench/512"
BATCH = 10_000


def store_at(revision: str):
    """The StreamStore class of streams/store.py at a git revision."""
    return module_at(revision, "streams/store.py", "store_baseline").StreamStore


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Log:
    """The tenant's history, grown in steps: what was written is remembered for the checks."""

    def __init__(self, store: StreamStore, keys: EventKeys, rng: np.random.Generator, sealing=None, transaction=None) -> None:
        self.store, self.keys, self.rng = store, keys, rng
        self.transaction = store.transaction if transaction is None else transaction  # one commit per BATCH events
        self.sealing = keys if sealing is None else sealing  # add_event's first argument (the baseline's: a cipher)
        self.persons = [(uuid.uuid4().hex, f"emp-{i:05d}") for i in range(PERSONS)]
        self.unknown_ids: list[str] = []
        self.events = 0
        self.per_person: dict[str, int] = {}

    def grow_events(self, total: int) -> float:
        started = time.perf_counter()
        while self.events < total:
            with self.transaction():
                for _ in range(min(BATCH, total - self.events)):
                    self._event(self.events)
                    self.events += 1
        return time.perf_counter() - started

    def _event(self, i: int) -> None:
        rng = self.rng
        day, within = divmod(i, EVENTS_PER_DAY)
        first = START_DAY + day * 86400 + 6 * 3600 + within * (14 * 3600 / EVENTS_PER_DAY) + float(rng.uniform(0, 5))
        span = float(rng.lognormal(4.0, 1.0)) if rng.random() > 0.01 else float(rng.uniform(1800, 7200))  # a few stay long
        payload = {"best_similarity": round(float(rng.uniform(0.4, 0.9)), 6), "track_length": int(rng.integers(2, 60)),
                   "votes": 3, "votes_for": 3, "tracks": int(rng.integers(1, 4)), "first_offset_s": round(float(rng.uniform(0, 3600)), 3),
                   "last_offset_s": round(float(rng.uniform(0, 3600)), 3), "latency_s": round(float(rng.uniform(0.3, 2)), 4)}
        if rng.random() < 0.7 or not self.unknown_ids:
            person_id, external_id = self.persons[int(rng.integers(PERSONS))]
            kind, who = "person_seen", {"person_id": person_id, "external_id": external_id}
            self.per_person[person_id] = self.per_person.get(person_id, 0) + 1
        else:
            kind, who = "unknown_seen", {"unknown_id": self.unknown_ids[int(rng.integers(len(self.unknown_ids)))]}
            payload["best_similarity"] = None
        self.store.add_event(self.sealing, kind, CAMERAS[int(rng.integers(len(CAMERAS)))], first, first + span, {**who, **payload})

    def grow_unknowns(self, total: int, dim: int) -> float:
        started = time.perf_counter()
        with self.transaction():
            while len(self.unknown_ids) < total:
                samples = int(min(MAX_UNKNOWN_SAMPLES, self.rng.geometric(0.4)))  # most strangers are seen once or twice
                unknown_id = "unk_" + uuid.uuid4().hex[:16]
                at = START_DAY + float(self.rng.uniform(0, 86400 * 30))
                self.store.put_unknown(self.keys.current, unknown_id, unit(self.rng.standard_normal((samples, dim), dtype=np.float32)),
                                       at, at + float(self.rng.uniform(0, 86400)), MODEL)
                self.unknown_ids.append(unknown_id)
        return time.perf_counter() - started


def timed(call, repeats: int) -> tuple[float, object]:
    """(mean seconds, last answer) of `repeats` calls."""
    answer, started = None, time.perf_counter()
    for _ in range(repeats):
        answer = call()
    return (time.perf_counter() - started) / repeats, answer


def baseline_attendance(old, keys: EventKeys, start: float) -> list[dict]:
    """The StreamService.attendance of the baseline revision, over its StreamStore.events (the day's events opened)."""
    rows: dict[str, dict] = {}
    for event in old.events(keys, 0, 10**9, kind="person_seen", day_start=start, day_end=start + 86400):
        entry = rows.setdefault(event["person_id"], {"person_id": event["person_id"], "external_id": event.get("external_id"),
                                                     "first_in": event["first_seen"], "last_out": event["last_seen"],
                                                     "first_camera": event["camera"], "last_camera": event["camera"], "events": 0})
        if event["first_seen"] < entry["first_in"]:
            entry.update(first_in=event["first_seen"], first_camera=event["camera"])
        if event["last_seen"] > entry["last_out"]:
            entry.update(last_out=event["last_seen"], last_camera=event["camera"])
        entry["events"] += 1
    return sorted(rows.values(), key=lambda r: r["first_in"])


def baseline_reidentify(unknowns: dict[str, dict], vector: np.ndarray) -> tuple[str | None, float]:
    """StreamService._reidentify's search before this change: every unknown's samples in turn."""
    best_id, best = None, -2.0
    for unknown_id, entry in unknowns.items():
        if entry["model"] != MODEL:
            continue
        similarity = float(np.max(entry["vectors"] @ vector))
        if similarity > best:
            best_id, best = unknown_id, similarity
    return best_id, best


def reidentification(log: Log, dim: int, sightings: int, threshold: float = 0.5) -> dict:
    """Both searches over the unknowns as the file holds them, for the same sightings; the gallery at its cap."""
    started = time.perf_counter()
    stored = log.store.unknowns(log.keys)
    load_s = time.perf_counter() - started
    gallery = UnknownGallery(MODEL, capacity=len(stored))
    started = time.perf_counter()
    for entry in stored.values():
        gallery.put(entry["unknown_id"], entry["vectors"], entry["created_at"], entry["last_seen"], entry["model"])
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(11)
    recent = sorted(stored, key=lambda u: stored[u]["last_seen"])[len(stored) // 2:]  # never the ones the cap evicts
    probes = []
    for i in range(sightings):
        if i % 2 == 0:  # a returning stranger: a sample of theirs, seen anew (cosine ~0.8)
            source = stored[recent[int(rng.integers(len(recent)))]]["vectors"][0]
            probes.append(unit(0.8 * source + 0.6 * unit(rng.standard_normal(dim, dtype=np.float32))))
        else:
            probes.append(unit(rng.standard_normal(dim, dtype=np.float32)))
    indexed, old, answers = [], [], []
    for i, probe in enumerate(probes):
        at = START_DAY + 86400 * 40 + i
        t0 = time.perf_counter()
        found, similarity = gallery.best(probe)
        if found is not None and similarity >= threshold:
            gallery.seen(found, probe, at)
        else:
            for evicted in gallery.evictions():
                gallery.pop(evicted)
            found = f"new_{i}"
            gallery.put(found, probe[None], at, at, MODEL)
        t1 = time.perf_counter()
        old_found, old_similarity = baseline_reidentify(stored, probe)
        if old_found is not None and old_similarity >= threshold:
            entry = stored[old_found]
            entry["vectors"] = np.vstack([entry["vectors"], probe[None]])[-MAX_UNKNOWN_SAMPLES:]
        else:
            old_found = f"new_{i}"
            stored[old_found] = {"unknown_id": old_found, "created_at": at, "last_seen": at, "vectors": probe[None], "model": MODEL}
        t2 = time.perf_counter()
        indexed.append(t1 - t0)
        old.append(t2 - t1)
        answers.append(found == old_found)
    return {"indexed_s": float(np.mean(indexed)), "baseline_s": float(np.mean(old)), "same_answers": all(answers),
            "returning_recognised": sum(a for a in answers[::2]), "load_s": round(load_s, 3), "build_s": round(build_s, 3),
            "gallery_mib": round(gallery.matrix_bytes() / 2**20, 1)}


def measure(log: Log, old_store, dim: int, sightings: int) -> dict:
    keys, store = log.keys, log.store
    days = log.events // EVENTS_PER_DAY
    day = START_DAY + (days // 2) * 86400
    heavy = 1 if log.events >= 500_000 else 2  # the baseline's full passes take seconds each at 1M
    out: dict[str, dict] = {}

    new_s, rows = timed(lambda: attendance(store, keys, day, day + 86400), 3)
    old_s, old_rows = timed(lambda: baseline_attendance(old_store, keys, day), heavy)
    out["attendance_day"] = {"indexed_s": new_s, "baseline_s": old_s, "same_answers": rows == old_rows, "persons": len(rows)}

    ranked = sorted(log.per_person, key=log.per_person.get)
    median = ranked[len(ranked) // 2]
    new_s, found = timed(lambda: store.events(keys, 0, 10**9, person=median), 5)
    old_s, old_found = timed(lambda: old_store.events(keys, 0, 10**9, person=median), heavy)
    out["person_events"] = {"indexed_s": new_s, "baseline_s": old_s, "events": len(found),
                            "same_answers": [e["seq"] for e in found] == [e["seq"] for e in old_found] and len(found) == log.per_person[median]}

    first, second = ranked[len(ranked) // 2 - 1], ranked[len(ranked) // 2 + 1]  # persons with as many events as the median
    new_s, deleted = timed(lambda: store.delete_events_of(keys, "person_id", first), 1)
    old_s, old_deleted = timed(lambda: old_store.delete_events_of(keys, "person_id", second), 1)
    out["person_deletion"] = {"indexed_s": new_s, "baseline_s": old_s, "events": deleted,
                              "same_answers": (deleted, old_deleted) == (log.per_person.pop(first), log.per_person.pop(second))}

    new_s, versions = timed(store.key_versions, 5)
    old_s, old_versions = timed(old_store.key_versions, 3)
    out["key_versions"] = {"indexed_s": new_s, "baseline_s": old_s, "same_answers": versions == old_versions}

    out["reidentification"] = reidentification(log, dim, sightings)
    for figure in out.values():
        figure["speedup"] = round(figure["baseline_s"] / figure["indexed_s"], 1)
    return out


def migration(baseline: str, folder: Path, events: int) -> dict:
    """A file the baseline wrote, opened by this code: the columns added on open, then every event tagged
    (`index_legacy_events` in its default batches, as the StreamSupervisor does at first use), once."""
    path = folder / "tenants" / "tenant-migrated" / "events.db"
    keys = EventKeys(tenant_id="tenant-migrated").add(1, RecordCipher(os.urandom(32), 1), os.urandom(32), current=True)
    old = store_at(baseline)(path, "tenant-migrated")
    # The baseline revision's store (its code from git, frozen) has no public transaction: its connection is one.
    written = Log(old, keys, np.random.default_rng(6), sealing=keys.current, transaction=lambda: old._db)
    written.unknown_ids = ["unk_" + uuid.uuid4().hex[:16] for _ in range(1000)]
    written.grow_events(events)
    old.close()
    started = time.perf_counter()
    store = StreamStore(path, "tenant-migrated")
    open_s = time.perf_counter() - started
    batches = 0
    while store.index_legacy_events(keys):
        batches += 1
    tag_s = time.perf_counter() - started - open_s
    person = max(written.per_person, key=written.per_person.get)
    found = len(store.events(keys, 0, 10**9, person=person)) == written.per_person[person]
    store.close()
    return {"events": events, "open_s": round(open_s, 2), "tag_s": round(tag_s, 2), "events_per_s": round(events / tag_s),
            "batches": batches + 1, "person_found_after": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000], help="log sizes, smallest first")
    parser.add_argument("--unknowns", type=int, nargs="+", default=[5_000, 50_000], help="unknowns at each size")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sightings", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="measurements of every size in turn; the median is kept")
    parser.add_argument("--baseline", default="356442b", help="git revision whose StreamStore is the baseline (before the index)")
    parser.add_argument("--dir", default=None, help="where the tenants' events.db files are written (default: a temp dir)")
    parser.add_argument("--migrate", type=int, default=100_000, help="events of a baseline-written file migrated (0: skip)")
    args = parser.parse_args()
    assert len(args.events) == len(args.unknowns), "one unknowns count per log size"

    folder = Path(args.dir or tempfile.mkdtemp(prefix="sg-events-bench-"))
    keys = EventKeys(tenant_id=TENANT).add(1, RecordCipher(os.urandom(32), 1), os.urandom(32), current=True)
    host = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 1)}
    print(f"{dt.date.today()}  {host['cpus']} CPUs, load average {host['load_before']}; files under {folder}", flush=True)

    # One tenant file per size, all written first, then measured in turn (round-robin), so that a change in the
    # host's load falls on every size alike and the growth figures compare like with like.
    tenants: dict[int, tuple[Log, object, dict]] = {}
    for events, unknowns in zip(args.events, args.unknowns):
        tenant = f"{TENANT}-{events}"
        path = folder / "tenants" / tenant / "events.db"
        store = StreamStore(path, tenant)
        log = Log(store, keys, np.random.default_rng(events))
        written = {"unknowns": unknowns, "unknowns_write_s": round(log.grow_unknowns(unknowns, args.dim), 1),
                   "write_s": round(log.grow_events(events), 1)}
        store.checkpoint()  # the writes above leave the WAL now, not inside the first timed deletion
        written["file_mib"] = round(sum(p.stat().st_size for p in path.parent.glob("events.db*")) / 2**20)
        print(f"{events:,} events written in {written['write_s']} s, {unknowns:,} unknowns in {written['unknowns_write_s']} s, "
              f"file {written['file_mib']} MiB", flush=True)
        tenants[events] = (log, store_at(args.baseline)(path, tenant), written)

    rounds: dict[int, list[dict]] = {events: [] for events in tenants}
    for r in range(args.rounds):
        for events, (log, old_store, _) in tenants.items():
            with threadpool_limits(1):  # one BLAS thread, as in the StreamSupervisor replica (Ray: OMP_NUM_THREADS from num_cpus < 1)
                figures = measure(log, old_store, args.dim, args.sightings)
            rounds[events].append(figures)
            print(f"\nround {r + 1}, {events:,} events (load average {os.getloadavg()[0]:.1f})", flush=True)
            for name, f in figures.items():
                print(f"  {name:>17}: indexed {f['indexed_s'] * 1000:9.2f} ms   baseline {f['baseline_s'] * 1000:10.2f} ms   "
                      f"x{f['speedup']:<7} same answers: {f['same_answers']}", flush=True)

    results = {}
    for events, measured in rounds.items():
        results[str(events)] = dict(tenants[events][2])
        for name in measured[0]:
            last = measured[-1][name]
            figure = {k: v for k, v in last.items() if k not in ("indexed_s", "baseline_s", "speedup", "same_answers")}
            for side in ("indexed", "baseline"):
                figure[f"{side}_ms"] = round(float(np.median([m[name][f"{side}_s"] for m in measured])) * 1000, 3)
            figure["speedup"] = round(figure["baseline_ms"] / figure["indexed_ms"], 1)
            figure["same_answers"] = all(m[name]["same_answers"] for m in measured)
            results[str(events)][name] = figure
    first, last = results[str(args.events[0])], results[str(args.events[-1])]
    growth = {name: {"indexed": round(last[name]["indexed_ms"] / first[name]["indexed_ms"], 1),
                     "baseline": round(last[name]["baseline_ms"] / first[name]["baseline_ms"], 1)}
              for name in ("attendance_day", "person_events", "person_deletion", "key_versions", "reidentification")}
    print(f"\nmedians of {args.rounds} rounds:")
    for events, figures in results.items():
        print(f"  {int(events):,} events: " + ", ".join(f"{name} {f['indexed_ms']} ms vs {f['baseline_ms']} ms (x{f['speedup']})"
                                                     for name, f in figures.items() if isinstance(f, dict)))
    print("growth from the first size to the last (x): " + ", ".join(f"{k} {v['indexed']} (baseline {v['baseline']})" for k, v in growth.items()))
    migrated = migration(args.baseline, folder, args.migrate) if args.migrate else None
    if migrated:
        print(f"migration of a file the baseline wrote: {migrated['events']:,} events, columns added in {migrated['open_s']} s, "
              f"tagged in {migrated['tag_s']} s ({migrated['events_per_s']:,} events/s); a person found after: "
              f"{migrated['person_found_after']}")
    host["load_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps({"date": dt.date.today().isoformat(), "host": host, "baseline": args.baseline, "dim": args.dim,
                      "events_per_day": EVENTS_PER_DAY, "persons": PERSONS, "rounds": args.rounds, "times": "ms (median of rounds)",
                      "results": results, "growth": growth, "migration": migrated}))


if __name__ == "__main__":
    main()
