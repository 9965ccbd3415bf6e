"""`securegate eval`: the argparse wiring for the evaluation package (cli.main calls `add_parser`)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="measure thresholds (FAR/FRR, EER, DET curve) and identification accuracy on labelled photos",
        description=(
            "Detect and embed every photo under DIR/<identity>/ with the service's own pipeline, score all "
            "same-person (genuine) and different-person (impostor) pairs, and write report.json, report.md, "
            "det.png and histogram.png. With --apply, write the chosen threshold into a tenant's settings."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="one folder per identity, each holding that person's photos")
    p.add_argument("--out", metavar="REPORT_DIR", default="eval-report", help="report folder (default: %(default)s)")
    p.add_argument("--groups", metavar="CSV",
                   help="CSV with an 'identity' column and one column per attribute (e.g. identity,group): "
                        "per-group FRR at the chosen threshold (default: DIR/groups.csv if present)")
    p.add_argument("--models", help="model pack directory (default: $SECUREGATE_MODELS, then antelopev2)")
    p.add_argument("--target-far", type=_probability, default=1e-3,
                   help="FAR the chosen threshold must meet (default: %(default)g); falls back to the EER "
                        "threshold when the data has too few impostor pairs to measure it")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: ONNX Runtime's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--apply", metavar="TENANT", help="write the chosen threshold as this tenant's default_threshold")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="SecureGate base URL for --apply (default: %(default)s)")
    p.add_argument("--admin-token", help="admin token for --apply (default: $SECUREGATE_ADMIN_TOKEN)")
    p.set_defaults(func=cmd_eval)
    return p


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a rate in (0, 1)")
    return value


def cmd_eval(ns: argparse.Namespace) -> int:
    from evaluation.apply import ApplyError, apply_threshold
    from evaluation.files import write_report
    from evaluation.report import summary_markdown
    from evaluation.run import evaluate

    token = ns.admin_token or os.environ.get("SECUREGATE_ADMIN_TOKEN")
    if ns.apply and not token:  # fail before minutes of inference, not after
        print("error: --apply needs --admin-token or SECUREGATE_ADMIN_TOKEN", file=sys.stderr)
        return 2
    try:
        ev = evaluate(ns.dir, models=ns.models, groups=ns.groups, target_far=ns.target_far,
                      progress=not ns.no_progress, threads=ns.threads)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = write_report(ev, ns.out)
    print(summary_markdown(ev.report))
    print(f"report: {files['json']}  {files['md']}  {files['det']}  {files['histogram']}")

    if ns.apply:
        chosen = ev.report["chosen"]
        if chosen["source"] == "eer":
            print(f"warning: {chosen['why']}; applying the EER threshold instead. Collect more identities "
                  "for a threshold at a stated FAR.", file=sys.stderr)
        try:
            tenant = apply_threshold(ns.url, ns.apply, chosen["threshold"], token, model=ev.report["model"])
        except ApplyError as exc:
            print(f"error: threshold not applied: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # connection refused, timeouts: say where, not a traceback
            print(f"error: threshold not applied: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        source = "target FAR" if chosen["source"] == "target_far" else "EER"
        print(f"applied default_threshold={chosen['threshold']} ({source}) to tenant {ns.apply}: "
              f"settings now {json.dumps(tenant.get('settings', {}))}")
    return 0
