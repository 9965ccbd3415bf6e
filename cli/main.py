"""`securegate`: the parser and the small commands; each larger command has its own module."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import get_args

from cli import admin, bulk_import, evaluate, persons
from cli.serve import cmd_serve
from securegate.schemas import AdminScope


def cmd_models(ns: argparse.Namespace) -> int:
    import onnxruntime as ort

    from vision.packs import resolve_pack

    pack = resolve_pack(ns.models)
    info = {**pack.describe(), "threshold_is_guess": not pack.threshold_is_known, "root": str(pack.root),
            "detector": pack.detector_path.name, "recognizer": pack.recognizer_path.name,
            "ignored": [{"file": i.file, "reason": i.reason} for i in pack.ignored],
            "available_providers": ort.get_available_providers()}
    print(json.dumps(info, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="securegate", description="Multi-tenant face recognition on Ray Serve")
    sub = parser.add_subparsers(dest="command", required=True)

    serve_p = sub.add_parser("serve", help="start a local Ray + Serve and run SecureGate until interrupted")
    serve_p.add_argument("--config", help="Serve config file (e.g. configs/local.yaml)")
    serve_p.add_argument("--host")
    serve_p.add_argument("--port", type=int)
    serve_p.add_argument("--models", help="model pack directory or InsightFace pack name, e.g. buffalo_l "
                         "(default: $SECUREGATE_MODELS, then antelopev2)")
    serve_p.add_argument("--data-dir", help="where tenant data lives (default: $SECUREGATE_DATA_DIR or ~/.securegate)")
    serve_p.set_defaults(func=cmd_serve)

    models_p = sub.add_parser("models", help="show the active model pack: names, dims, providers")
    models_p.add_argument("--models", help="model pack directory or InsightFace pack name (default as for serve)")
    models_p.set_defaults(func=cmd_models)

    evaluate.add_parser(sub)
    bulk_import.add_parser(sub)
    persons.add_parser(sub)

    keys_p = sub.add_parser("keys", help="key rotation and status (admin API of a running service)")
    keys_p.add_argument("action", choices=["rotate", "status"])
    keys_p.add_argument("--root", action="store_true", help="rotate the org root key (re-wraps tenant keys)")
    keys_p.add_argument("--tenant", help="rotate this tenant's content key (records re-encrypted in the background)")
    admin.add_options(keys_p)
    keys_p.set_defaults(func=admin.cmd_keys)

    migrate_p = sub.add_parser("migrate", help="move a tenant onto another served model pack: its kept enrolment crops "
                               "re-embedded into a shadow index, then an atomic switch (admin API of a running service)")
    migrate_p.add_argument("--tenant", required=True)
    migrate_p.add_argument("--to", help="the pack: default, or a name of the settings' packs")
    migrate_p.add_argument("--batch-size", type=int, default=64, help="crops re-embedded per step")
    migrate_p.add_argument("--hold", action="store_true", help="build the shadow index, then wait; run again without "
                           "--hold to switch")
    migrate_p.add_argument("--pause", type=float, default=0.0, help="seconds between batches (leave CPU to live traffic)")
    migrate_p.add_argument("--status", action="store_true", help="print the migration's progress")
    admin.add_options(migrate_p)
    migrate_p.set_defaults(func=admin.cmd_migrate)

    audit_p = sub.add_parser("audit", help="verify the org audit or a tenant's audit chain (admin API of a running service)")
    audit_p.add_argument("action", choices=["verify"])
    audit_p.add_argument("--tenant", help="this tenant's audit chain (default: the org audit)")
    admin.add_options(audit_p)
    audit_p.set_defaults(func=admin.cmd_audit)

    admin_keys_p = sub.add_parser("admin-keys", help="named admin keys with scopes: create (secret shown once), list, revoke")
    admin_keys_sub = admin_keys_p.add_subparsers(dest="action", required=True)
    create_key_p = admin_keys_sub.add_parser("create")
    create_key_p.add_argument("name")
    create_key_p.add_argument("--scopes", required=True, help="comma-separated: " + ", ".join(get_args(AdminScope)))
    admin_keys_sub.add_parser("list")
    admin_keys_sub.add_parser("revoke").add_argument("name")
    for child in admin_keys_sub.choices.values():
        admin.add_options(child)
    admin_keys_p.set_defaults(func=admin.cmd_admin_keys)

    tenants_p = sub.add_parser("tenants", help="create, list, show (where its shards run), delete tenants; rotate a "
                               "tenant's API key")
    tenants_sub = tenants_p.add_subparsers(dest="action", required=True)
    create_p = tenants_sub.add_parser("create")
    create_p.add_argument("name")
    create_p.add_argument("--settings", help="JSON, e.g. '{\"default_threshold\": 0.5}'")
    tenants_sub.add_parser("list")
    for action in ("show", "delete", "rotate-key"):
        tenants_sub.add_parser(action).add_argument("tenant_id")
    for child in tenants_sub.choices.values():
        admin.add_options(child)
    tenants_p.set_defaults(func=admin.cmd_tenants)

    ns = parser.parse_args(argv)
    from vision.packs import ModelPackError

    try:
        return ns.func(ns)
    except ModelPackError as exc:  # its message says how to fix it: one line, no traceback
        print(f"securegate: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
