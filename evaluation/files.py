"""The files `securegate eval` writes: report.json, report.md, det.png and histogram.png."""

from __future__ import annotations

import json
import os
from pathlib import Path

from evaluation import plots
from evaluation.report import Evaluation, jsonable, summary_markdown


def write_report(evaluation: Evaluation, out_dir: str | os.PathLike) -> dict[str, Path]:
    """report.json, report.md, det.png and histogram.png into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = evaluation.report
    files = {"json": out / "report.json", "md": out / "report.md", "det": out / "det.png",
             "histogram": out / "histogram.png"}
    files["json"].write_text(json.dumps(jsonable(r), indent=2) + "\n")
    plots.plot_det(evaluation, files["det"])
    plots.plot_histogram(evaluation, files["histogram"])
    files["md"].write_text(summary_markdown(r))
    return files
