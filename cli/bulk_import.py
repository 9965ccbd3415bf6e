"""`securegate import DIR`: enrol a folder of photos through the bulk import API, in batches.

Layout: one folder per person (the folder's name is the external id), or `--csv` rows `external_id,path`
(paths relative to the CSV's folder unless absolute). Re-running is resuming: the server skips every photo
already enrolled for its person (same external id, same bytes). Every refused photo is written to the report
(CSV: path, external_id, code, message, details) with its reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# Raw bytes per request: base64 adds a third, and the server's default body limit is 20 MiB.
BATCH_BYTES = 12 * 1024 * 1024


def photos_in_folders(root: Path) -> list[tuple[str, Path]]:
    """(external_id, path) for every photo in each sub-folder of `root`, sorted (stable batches on re-runs)."""
    return [(person.name, photo) for person in sorted(p for p in root.iterdir() if p.is_dir())
            for photo in sorted(person.rglob("*")) if photo.is_file() and photo.suffix.lower() in PHOTO_SUFFIXES]


def photos_in_csv(path: Path) -> list[tuple[str, Path]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"external_id", "path"} <= set(rows[0]):
        raise SystemExit(f"{path}: the header must name the columns external_id,path")
    return [(row["external_id"], (path.parent / row["path"]) if not os.path.isabs(row["path"]) else Path(row["path"]))
            for row in rows]


def batches(photos: list[tuple[str, Path]], size: int, max_bytes: int = BATCH_BYTES) -> Iterator[list[tuple[str, Path]]]:
    """Up to `size` photos and about `max_bytes` of them per batch (one photo over the budget goes alone)."""
    batch, used = [], 0
    for external_id, path in photos:
        n = path.stat().st_size
        if batch and (len(batch) >= size or used + n > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append((external_id, path))
        used += n
    if batch:
        yield batch


def run_import(client, photos: list[tuple[str, Path]], batch_size: int, report_path: Path, progress: bool = True,
               parallel: int = 2) -> dict:
    """Send `photos` in batches through `client` (a SecureGateClient, thread-safe), `parallel` calls in flight
    (so one batch is embedded and stored while the next is detected); the counts, and the report written."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    def send(batch: list[tuple[str, Path]]):
        return batch, client.import_faces([{"external_id": e, "image": p.read_bytes()} for e, p in batch])

    counts = {"enrolled": 0, "skipped": 0, "refused": 0}
    report_path.parent.mkdir(parents=True, exist_ok=True)
    with open(report_path, "w", newline="") as fh, tqdm(total=len(photos), unit="photo", disable=not progress,
                                                         dynamic_ncols=True) as bar, ThreadPoolExecutor(parallel) as pool:
        report = csv.writer(fh)
        report.writerow(["path", "external_id", "code", "message", "details"])
        for batch, answer in pool.map(send, batches(photos, batch_size)):  # answers in order
            for item in answer.items:
                counts[item.status] += 1
                if item.status == "refused":
                    error = item.error
                    details = {k: v for k, v in error.model_dump().items() if k not in ("code", "message") and v is not None}
                    report.writerow([str(batch[item.index][1]), item.external_id, error.code, error.message,
                                     json.dumps(details) if details else ""])
            fh.flush()  # an interrupted run keeps the report of the batches it finished
            bar.update(len(batch))
            bar.set_postfix(counts, refresh=False)
    return counts


def cmd_import(ns: argparse.Namespace) -> int:
    from securegate.client import SecureGateClient, SecureGateError

    api_key = ns.api_key or os.environ.get("SECUREGATE_API_KEY")
    if not api_key:
        raise SystemExit("securegate import: pass --api-key or set SECUREGATE_API_KEY")
    root = Path(ns.dir)
    photos = photos_in_csv(Path(ns.csv)) if ns.csv else photos_in_folders(root)
    if not photos:
        raise SystemExit(f"securegate import: no photos found in {ns.csv or root}")
    report = Path(ns.report) if ns.report else Path("import-refused.csv")
    with SecureGateClient(ns.url, api_key=api_key, timeout=ns.timeout) as client:
        try:
            counts = run_import(client, photos, ns.batch_size, report, progress=not ns.no_progress, parallel=ns.parallel)
        except SecureGateError as exc:  # e.g. unreachable, bad key, 503: what was acknowledged stays enrolled
            print(f"securegate import: stopped: {exc} (re-run to resume; enrolled photos are skipped)", file=sys.stderr)
            return 1
    print(json.dumps({**counts, "photos": len(photos), "report": str(report)}))
    return 0


def add_parser(sub) -> None:
    from securegate.schemas import IMPORT_MAX_ITEMS

    p = sub.add_parser("import", help="enrol a folder of photos (one folder per person, or --csv) through the bulk import API")
    p.add_argument("dir", nargs="?", default=".", help="one sub-folder per person, named by its external id")
    p.add_argument("--csv", help="rows external_id,path instead of folders (paths relative to the CSV)")
    p.add_argument("--url", default=os.environ.get("SECUREGATE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--api-key", help="the tenant's API key (default: $SECUREGATE_API_KEY)")
    p.add_argument("--batch-size", type=int, default=32, choices=range(1, IMPORT_MAX_ITEMS + 1), metavar=f"1..{IMPORT_MAX_ITEMS}")
    p.add_argument("--parallel", type=int, default=2, help="batches in flight (one is embedded and stored while the next is detected)")
    p.add_argument("--report", help="CSV of refused photos with their reasons (default: ./import-refused.csv)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per batch request")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    p.set_defaults(func=cmd_import)
