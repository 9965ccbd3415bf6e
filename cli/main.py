"""`securegate` command line: run the service, inspect the model pack."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from securegate import eval_cli

APP_NAME = "securegate"


def load_serve_config(path: str | None) -> tuple[dict[str, Any], dict[str, dict], dict[str, Any]]:
    """(app args, {deployment: options}, http_options) from a Serve config file, as `serve run` reads it."""
    if not path:
        return {}, {}, {}
    config = yaml.safe_load(Path(path).read_text()) or {}
    apps = config.get("applications") or [{}]
    app = next((a for a in apps if a.get("name") == APP_NAME), apps[0])
    options = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}
    return dict(app.get("args") or {}), options, dict(config.get("http_options") or {})


def cmd_serve(ns: argparse.Namespace) -> int:
    from securegate.models import resolve_pack

    args, deployment_options, http = load_serve_config(ns.config)
    if ns.models:
        args["models"] = ns.models
    # The pack is found (and fetched, with progress, if missing) here, before Ray starts: a missing pack is
    # one clear error on the terminal rather than every replica retrying, and replicas get its directory.
    pack = resolve_pack(args.get("models"))
    args["models"] = str(pack.root)
    ignored = f"{len(pack.ignored)} other file{'' if len(pack.ignored) == 1 else 's'} ignored"
    print(f"Model pack: {pack.root} (detector {pack.detector_path.name}, recognizer {pack.recognizer_path.name}, "
          f"{ignored}: see `securegate models`)", flush=True)

    import ray
    from ray import serve

    from graph import build_app
    if ns.data_dir:
        args["data_dir"] = str(Path(ns.data_dir).expanduser().resolve())
    # The admin token is generated here on first start (not in a replica) so it can be shown once, on the
    # operator's terminal rather than in logs.
    from securegate.settings import Settings
    from tenancy.registry import load_or_create_admin_token

    data_dir = Settings.from_args(args).data_dir
    token, created = load_or_create_admin_token(data_dir, os.environ.get("SECUREGATE_ADMIN_TOKEN"))
    if created:
        print(f"Admin token (generated now, stored in {Path(data_dir) / 'admin_token'}, mode 0600):\n  {token}", flush=True)
    host = ns.host or http.get("host") or "127.0.0.1"
    port = ns.port or http.get("port") or 8000

    stop = threading.Event()
    ray.init(include_dashboard=False)
    # After ray.init(): Ray's core worker installs its own SIGTERM handler (log + abort) during init.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve.start(http_options={**http, "host": host, "port": port})
        serve.run(build_app(args, deployment_options), name=APP_NAME, route_prefix="/")
        scheme = "https" if http.get("ssl_certfile") else "http"
        print(f"SecureGate is ready at {scheme}://{host}:{port}/  (API docs: {scheme}://{host}:{port}/docs)", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("shutting down", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0


def cmd_models(ns: argparse.Namespace) -> int:
    import onnxruntime as ort

    from securegate.models import resolve_pack

    pack = resolve_pack(ns.models)
    info = {**pack.describe(), "threshold_is_guess": not pack.threshold_is_known, "root": str(pack.root),
            "detector": pack.detector_path.name, "recognizer": pack.recognizer_path.name,
            "ignored": [{"file": i.file, "reason": i.reason} for i in pack.ignored],
            "available_providers": ort.get_available_providers()}
    print(json.dumps(info, indent=2))
    return 0


# ---- admin commands: talk to a running service over its admin API ------------------------------------------
def admin_client(ns: argparse.Namespace):
    """httpx client for the admin API. The token: --admin-token, $SECUREGATE_ADMIN_TOKEN, or the one the
    service generated into its data dir."""
    import httpx

    from securegate.settings import default_data_dir

    token = ns.admin_token or os.environ.get("SECUREGATE_ADMIN_TOKEN")
    if not token:
        path = Path(ns.data_dir or default_data_dir()) / "admin_token"
        if not path.exists():
            raise SystemExit(f"no admin token: pass --admin-token, set SECUREGATE_ADMIN_TOKEN, or point --data-dir at {path.parent}")
        token = path.read_text().strip()
    return httpx.Client(base_url=ns.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _print_response(response) -> int:
    if response.status_code == 204:
        return 0
    print(json.dumps(response.json(), indent=2))
    return 0 if response.is_success else 1


def cmd_keys(ns: argparse.Namespace) -> int:
    with admin_client(ns) as client:
        if ns.action == "status":
            return _print_response(client.get("/v1/admin/keys/status"))
        if ns.root == bool(ns.tenant):
            raise SystemExit("keys rotate: give exactly one of --root or --tenant ID")
        if ns.root:
            return _print_response(client.post("/v1/admin/keys/rotate-root"))
        return _print_response(client.post(f"/v1/tenants/{ns.tenant}/keys/rotate"))


def cmd_tenants(ns: argparse.Namespace) -> int:
    with admin_client(ns) as client:
        if ns.action == "create":
            settings = json.loads(ns.settings) if ns.settings else None
            return _print_response(client.post("/v1/tenants", json={"name": ns.name, "settings": settings}))
        if ns.action == "list":
            return _print_response(client.get("/v1/tenants"))
        if ns.action == "delete":
            return _print_response(client.delete(f"/v1/tenants/{ns.tenant_id}"))
        return _print_response(client.post(f"/v1/tenants/{ns.tenant_id}/api-keys"))


def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("SECUREGATE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--admin-token")
    parser.add_argument("--data-dir", help="where to find the generated admin token")


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

    eval_cli.add_parser(sub)

    keys_p = sub.add_parser("keys", help="key rotation and status (admin API of a running service)")
    keys_p.add_argument("action", choices=["rotate", "status"])
    keys_p.add_argument("--root", action="store_true", help="rotate the org root key (re-wraps tenant keys)")
    keys_p.add_argument("--tenant", help="rotate this tenant's content key (records re-encrypted in the background)")
    _admin_options(keys_p)
    keys_p.set_defaults(func=cmd_keys)

    tenants_p = sub.add_parser("tenants", help="create, list, delete tenants; rotate a tenant's API key")
    tenants_sub = tenants_p.add_subparsers(dest="action", required=True)
    create_p = tenants_sub.add_parser("create")
    create_p.add_argument("name")
    create_p.add_argument("--settings", help="JSON, e.g. '{\"default_threshold\": 0.5}'")
    tenants_sub.add_parser("list")
    for action in ("delete", "rotate-key"):
        tenants_sub.add_parser(action).add_argument("tenant_id")
    for child in tenants_sub.choices.values():
        _admin_options(child)
    tenants_p.set_defaults(func=cmd_tenants)

    ns = parser.parse_args(argv)
    from securegate.models import ModelPackError

    try:
        return ns.func(ns)
    except ModelPackError as exc:  # its message says how to fix it: one line, no traceback
        print(f"securegate: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
