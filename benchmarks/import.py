"""Bulk import: faces enrolled per second through `POST /v1/persons/import` against the one-photo-per-call API
and against the raw detect+embed pipeline, same photos, same machine, one run.

    .venv/bin/python benchmarks/import.py [--trials 3] [--rounds 2] [--batch 16] [--parallel 2] [--config configs/local.yaml] [--models DIR]

Workload: the shared identity photos, `rounds` times per trial, each time under new external ids (so every photo is
a new face of a new person: nothing is skipped as already enrolled).
- raw: SecureGate's own vision classes in this process (FaceDetector, FaceEmbedder with the deployment's
  settings): decode + detect + crop each photo, one embed call per `batch` crops. No HTTP, no storage.
- single: the app as `securegate serve --config` deploys it; persons created beforehand (untimed: the
  baseline's most favourable case), then one `POST /v1/persons/{id}/faces` per photo from 4 client threads.
- import: the same app, `SecureGateClient.import_faces` as `securegate import` sends it: `batch` photos per
  call, `parallel` calls in flight; persons created by the import itself.

Raw, single and import are measured in turn `trials` times (a change of load hits all three alike); the
ratios are of the medians. Last line: one JSON object with `import_vs_single` and `import_vs_raw` and the load average:
the machine is shared, so the figures of one run compare with each other, not with another day's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from deployed_app import deployed  # noqa: E402  (benchmarks/, the script's own folder)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def identity_photos(faces_dir: Path) -> list[tuple[str, bytes]]:
    with open(faces_dir / "manifest.csv", newline="") as fh:
        return [(row["identity"], (faces_dir.parent / row["path"]).read_bytes())
                for row in csv.DictReader(fh) if "/identities/" in row["path"]]


class Raw:
    """The raw pipeline in this process: decode + detect + enrolment gate per photo, one embed call per batch."""

    def __init__(self, models: Path) -> None:
        from securegate.settings import Settings
        from tenancy.tenant import TenantSettings
        from vision.detector import FaceDetector
        from vision.embedder import FaceEmbedder
        from vision.packs import resolve_pack
        from vision.runtime import onnx_providers

        self.settings = Settings.model_validate({"models": str(models)})
        pack = resolve_pack(str(models))
        providers = onnx_providers(use_gpu=False)
        self.detector = FaceDetector(pack, providers, self.settings.detector.det_size, self.settings.detector.det_thresh)
        self.embedder = FaceEmbedder(pack, providers, threads=self.settings.embedder.threads)
        self.gates = TenantSettings().quality

    def enrol(self, photos: list[bytes], batch: int) -> int:
        from tenancy.quality import enrolment_face
        from vision import images

        faces = 0
        for i in range(0, len(photos), batch):
            crops = []
            for data in photos[i:i + batch]:
                found = self.detector.detect(images.decode(data, self.settings.limits.max_image_pixels), self.settings.limits.max_faces)
                try:
                    face, _ = enrolment_face(found, None, self.gates)
                except Exception:
                    continue
                crops.append(face.crop)
            if crops:
                self.embedder.embed(crops)
            faces += len(crops)
        return faces


def timed(run) -> dict:
    started = time.perf_counter()
    faces = run()
    elapsed = time.perf_counter() - started
    return {"faces": faces, "seconds": round(elapsed, 3), "faces_per_s": round(faces / elapsed, 2)}


def run_all(config_path: Path, models: Path, photos: list[tuple[str, bytes]], trials: int, rounds: int, batch: int,
            parallel: int) -> dict:
    """`trials` rounds of raw, single and import in turn (so a change of load hits all three alike)."""
    from securegate.client import SecureGateClient

    raw = Raw(models)
    raw.enrol([photos[0][1]], batch)  # warm-up
    with deployed(config_path, models, "sg-bench-import-") as (base, token):
        admin = SecureGateClient(base, admin_token=token, timeout=600)
        keys = [admin.create_tenant(name).api_key for name in ("bench-single", "bench-import")]
        single, bulk = (SecureGateClient(base, api_key=key, timeout=600) for key in keys)
        single.enrol_face(single.create_person(external_id="warm-up").person_id, photos[0][1])
        bulk.import_faces([{"external_id": "warm-up", "image": photos[0][1]}])
        clients: dict[int, SecureGateClient] = {}

        def enrol(job) -> int:
            import threading

            client = clients.setdefault(threading.get_ident(), SecureGateClient(base, api_key=keys[0], timeout=600))
            try:
                client.enrol_face(*job)
                return 1
            except Exception:  # refused by a gate: not enrolled, as in the other paths
                return 0

        out: dict[str, list[dict]] = {"raw": [], "single": [], "import": []}
        for trial in range(trials):
            names = [(f"{who}-{trial}-{r}-{k}", data) for r in range(rounds) for k, (who, data) in enumerate(photos)]
            out["raw"].append(timed(lambda: raw.enrol([data for _, data in names], batch)))
            # One photo per call; persons made beforehand, untimed (the baseline's most favourable case).
            work = [(single.create_person(external_id=name).person_id, data) for name, data in names]

            def one_per_call() -> int:
                with ThreadPoolExecutor(4) as pool:
                    return sum(pool.map(enrol, work))

            out["single"].append(timed(one_per_call))
            # Bulk import as `securegate import` sends it (`parallel` calls in flight); persons made by the import.
            items = [{"external_id": name, "image": data} for name, data in names]
            chunks = [items[i:i + batch] for i in range(0, len(items), batch)]

            def bulk_import() -> int:
                with ThreadPoolExecutor(parallel) as pool:
                    return sum(answer.enrolled for answer in pool.map(bulk.import_faces, chunks))

            out["import"].append(timed(bulk_import))
            print(f"  trial {trial}: " + "  ".join(f"{k} {v[-1]['faces_per_s']}/s" for k, v in out.items())
                  + f"  load {os.getloadavg()[0]:.1f}", flush=True)
        for client in (admin, single, bulk, *clients.values()):
            client.close()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="raw, single and import measured in turn, this many times")
    parser.add_argument("--rounds", type=int, default=2, help="times the identity photos are enrolled per trial (as new persons)")
    parser.add_argument("--batch", type=int, default=16, help="photos per import call (and per raw embed call)")
    parser.add_argument("--parallel", type=int, default=2, help="import calls in flight (securegate import's default)")
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--models", default=os.environ.get("SECUREGATE_MODELS", str(SHARED / "models")))
    parser.add_argument("--faces", default=str(SHARED / "faces"))
    ns = parser.parse_args()
    photos = identity_photos(Path(ns.faces))
    load_start = os.getloadavg()
    print(f"{len(photos)} photos x {ns.rounds} per trial, {ns.trials} trials; {os.cpu_count()} cores; load {load_start}", flush=True)
    out = run_all(Path(ns.config), Path(ns.models), photos, ns.trials, ns.rounds, ns.batch, ns.parallel)
    median = {path: statistics.median(r["faces_per_s"] for r in runs) for path, runs in out.items()}
    per_trial = [{path: out[path][t]["faces_per_s"] for path in out} for t in range(ns.trials)]
    result = {
        "import_vs_single": round(median["import"] / median["single"], 3),
        "import_vs_raw": round(median["import"] / median["raw"], 3),
        "import_faces_per_s": median["import"], "single_faces_per_s": median["single"], "raw_faces_per_s": median["raw"],
        "photos_per_trial": len(photos) * ns.rounds, "trials": ns.trials, "batch": ns.batch, "parallel": ns.parallel,
        "import_calls_per_trial": -(-len(photos) * ns.rounds // ns.batch), "single_calls_per_trial": len(photos) * ns.rounds,
        "per_trial": per_trial, "cores": os.cpu_count(),
        "load_avg_at_start": round(load_start[0], 1), "load_avg_at_end": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
