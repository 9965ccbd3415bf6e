"""The photo folder `securegate eval` reads: one folder per identity, and an optional groups CSV."""

from __future__ import annotations

import csv
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def list_dataset(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """identity → its image files (sorted by name), and the non-image files that were ignored."""
    identities: dict[str, list[Path]] = {}
    ignored: list[str] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in person.iterdir() if f.is_file() and not f.name.startswith("."))
        identities[person.name] = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        ignored += [str(f) for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    return identities, ignored


def read_groups(path: Path) -> dict[str, dict[str, str]]:
    """attribute → {identity → group} from a CSV with an `identity` column; every other column is one
    grouping attribute (e.g. `identity,sex,age_band`)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "identity" not in reader.fieldnames:
            raise ValueError(f"{path}: needs a header with an 'identity' column, e.g. identity,group")
        attributes = [c for c in reader.fieldnames if c != "identity"]
        if not attributes:
            raise ValueError(f"{path}: needs at least one group column besides 'identity'")
        out: dict[str, dict[str, str]] = {a: {} for a in attributes}
        for row in reader:
            for a in attributes:
                value = (row.get(a) or "").strip()
                if value:
                    out[a][row["identity"].strip()] = value
    return out
