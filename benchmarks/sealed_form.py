"""The one sealed form (kms/records.py tokens), against the parts form of 820bf94, in the same run: a tenant file of
N faces (512-d, a kept crop for none) written by the code of 820bf94 (taken from git, run in a child process),
then opened by this code (the schema v7 migration re-packs every sealed value, nothing decrypted).

    .venv/bin/python benchmarks/sealed_form.py [--faces 10000]

Reports: enrolment per face (add_faces, 100 a transaction) and activation per face (load_all, best of 5) under each
code on its own file, the migration's time, and the file's size before and after (VACUUMed both, so free pages do
not count). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "820bf94"
TENANT, MODEL, DIM = "bench", "bench/512", 512
KEY = bytes(range(32))


def write_and_load(path: Path, faces: int) -> dict:
    """Run with the code under test first on sys.path: enrol `faces` faces into a new file, then load them all."""
    import numpy as np

    from kms.records import RecordCipher
    from tenancy.personal import PersonKeys
    from tenancy.store import TenantStore

    cipher = RecordCipher(KEY, 1)

    class Key:  # the DataKey shape PersonKeys needs
        version, key = 1, KEY

        def cipher(self):
            return cipher

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((faces, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = TenantStore.open(path, TENANT, MODEL, DIM)
    person = store.create_person(None, {}, keys=PersonKeys(lambda version, purpose: Key())).person_id
    start = time.perf_counter()
    for first in range(0, faces, 100):
        batch = vectors[first:first + 100]
        store.add_faces(person, batch, cipher, [0.9] * len(batch), [0.9] * len(batch))
    enrol_s = time.perf_counter() - start
    load_s = best_load(store, cipher, vectors)
    store.vacuum()
    store.close()
    return {"enrol_us_per_face": enrol_s / faces * 1e6, "load_us_per_face": load_s / faces * 1e6}


def best_load(store, cipher, vectors, rounds: int = 5) -> float:
    import numpy as np

    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        loaded = store.load_all(lambda version: cipher)
        best = min(best, time.perf_counter() - start)
    assert np.allclose(np.sort(loaded.vectors, axis=0), np.sort(vectors, axis=0))
    return best


def baseline(path: Path, faces: int) -> dict:
    """write_and_load under the code of BASELINE, in a child with that tree first on sys.path."""
    with tempfile.TemporaryDirectory() as code:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(code, filter="data")
        out = subprocess.run([sys.executable, "-c", f"import sys, json; sys.path[:0] = [{code!r}, {str(REPO / 'benchmarks')!r}];"
                              f" import sealed_form as b; from pathlib import Path;"
                              f" print(json.dumps(b.write_and_load(Path({str(path)!r}), {faces})))"],
                             check=True, cwd=code, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=10_000)
    faces = parser.parse_args().faces
    import numpy as np

    from kms.records import RecordCipher
    from tenancy.store import TenantStore

    with tempfile.TemporaryDirectory(prefix="securegate-bench-") as tmp:
        old_file, migrated, new_file = Path(tmp, "old.db"), Path(tmp, "migrated.db"), Path(tmp, "new.db")
        before = baseline(old_file, faces)
        shutil.copy(old_file, migrated)
        start = time.perf_counter()
        store = TenantStore.open(migrated, TENANT, MODEL, DIM)
        migrate_s = time.perf_counter() - start
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((faces, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        migrated_load_s = best_load(store, RecordCipher(KEY, 1), vectors)
        store.vacuum()
        store.close()
        after = write_and_load(new_file, faces)
        sizes = {"old_bytes": os.path.getsize(old_file), "migrated_bytes": os.path.getsize(migrated),
                 "new_bytes": os.path.getsize(new_file)}
    result = {
        "benchmark": "sealed_form", "faces": faces, "dim": DIM, "baseline": BASELINE,
        "enrol_us_per_face": {"before": round(before["enrol_us_per_face"], 1), "after": round(after["enrol_us_per_face"], 1)},
        "load_us_per_face": {"before": round(before["load_us_per_face"], 2), "after": round(after["load_us_per_face"], 2),
                             "migrated_file": round(migrated_load_s / faces * 1e6, 2)},
        "load_ratio_after_vs_before": round(before["load_us_per_face"] / after["load_us_per_face"], 3),
        "migration_s": round(migrate_s, 3), **sizes,
        "size_ratio_new_vs_old": round(sizes["new_bytes"] / sizes["old_bytes"], 4),
        "load_avg_1m": os.getloadavg()[0],
    }
    print(f"{faces} faces of {DIM}-d: enrol {result['enrol_us_per_face']['before']} -> {result['enrol_us_per_face']['after']} us/face;"
          f" activation (load_all) {result['load_us_per_face']['before']} -> {result['load_us_per_face']['after']} us/face"
          f" (x{result['load_ratio_after_vs_before']} speed), migrated file {result['load_us_per_face']['migrated_file']}")
    print(f"migration of the {BASELINE} file: {migrate_s:.3f} s; size {sizes['old_bytes']} -> {sizes['migrated_bytes']} (migrated),"
          f" {sizes['new_bytes']} (written new)")
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
