"""`securegate serve`: start a local Ray + Serve and deploy SecureGate from a Serve config, the way
`serve run CONFIG` does, so every option an operator writes (proxy_location, http/grpc options, import_path,
runtime_env, deployments) takes effect."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import yaml
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from securegate.settings import Settings

APP_NAME = "securegate"
# What `securegate serve` runs without --config: the graph's builder with embedded defaults.
DEFAULT_CONFIG = {
    "proxy_location": "HeadOnly",
    "http_options": {"host": "127.0.0.1", "port": 8000},
    "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": "graph:build_app", "args": {}}],
}


# Ray Serve's throughput-optimised data path (Ray >= 2.56; constants in ray/serve/_private/constants.py): user code
# and handle routers on each replica's own event loop, gRPC between replicas, direct ingress behind the proxy,
# (replica logs go to the session's log files, not stderr). Measured by
# benchmarks/pipeline.py: CPU per searched image outside the Detector 103 -> 56 ms at concurrency 4 (docs/benchmarks.md).
# Every Ray process reads it when it imports Serve, so it must be in the environment before Ray starts.
# Request logs are still written as they happen (the mode would buffer 1000 lines): operators and tests read them.
# Direct ingress would hold every stopping Ingress replica for a 30 s drain (meant for an external load balancer
# such as HAProxy); Serve's own proxy stops routing to it at once, so 2 s drains what is in flight. Measured: each
# serve.shutdown() or app restart in the tests waited 31 s (5 of them in one CI run).
SERVE_ENVIRONMENT = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
                     "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def start_ray(**init_kwargs):
    """`ray.init(**init_kwargs)` with SERVE_ENVIRONMENT in the environment of every process Ray starts (an
    operator's own value of a variable wins). This process imported Serve above, before the variables were
    set, so its own handles keep their router on a separate loop and synchronous `.result()` calls still work
    (the throughput mode requires callers inside an event loop)."""
    import ray

    for key, value in SERVE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    return ray.init(**init_kwargs)


def read_config(path: str | os.PathLike | None) -> ServeDeploySchema:
    """A Serve config file validated by Serve's own schema (the defaults above when `path` is None)."""
    raw = yaml.safe_load(Path(path).read_text()) if path else DEFAULT_CONFIG
    return ServeDeploySchema.model_validate(raw or {})


def securegate_app(config: ServeDeploySchema) -> ServeApplicationSchema:
    """The application named `securegate` in the config, or its only application."""
    apps = config.applications
    named = [a for a in apps if a.name == APP_NAME]
    if named:
        return named[0]
    if len(apps) == 1:
        return apps[0]
    raise ValueError(f"the config has {len(apps)} applications and none is named {APP_NAME!r}")


def deployment_options(app: ServeApplicationSchema) -> dict[str, dict]:
    """{deployment name: the options the config sets for it}."""
    return {d.name: d.model_dump(exclude_unset=True, exclude={"name"}) for d in app.deployments}


def load_serve_config(path: str | os.PathLike | None) -> tuple[dict, dict[str, dict], dict]:
    """(app args, {deployment: options}, http_options) of the securegate app, read through Serve's schema:
    for Python callers that run the app with `serve.run(graph.build_app(args, options))` (tests, benchmarks)."""
    config = read_config(path)
    app = securegate_app(config)
    return dict(app.args or {}), deployment_options(app), config.http_options.model_dump(exclude_unset=True)


def deploy(config: ServeDeploySchema, timeout_s: float = 600) -> None:
    """Start Serve with the config's proxy/HTTP/gRPC options and deploy its applications; returns once
    they run (raises if one fails to deploy). Needs `ray.init()` first."""
    import time

    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions

    # Serve has no public in-process "deploy this config" call; these are the calls `serve run CONFIG` makes.
    client = serve_api.serve_start(http_options=config.http_options.model_dump(), proxy_location=config.proxy_location,
                                   grpc_options=gRPCOptions(**config.grpc_options.model_dump()),
                                   controller_options=config.controller_options)
    client.deploy_apps(config)
    deadline = time.monotonic() + timeout_s
    names = {a.name for a in config.applications}
    while True:
        statuses = serve.status().applications
        states = {n: statuses[n].status for n in names if n in statuses}
        failed = {n: statuses[n].message for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"deploying {', '.join(failed)} failed: {next(iter(failed.values()))}")
        if len(states) == len(names) and all(s == "RUNNING" for s in states.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"applications not running after {timeout_s:.0f}s: {states}")
        time.sleep(0.5)


def root_key_warning(settings: Settings) -> str | None:
    """One line when the `local` key provider's root key sits inside the data dir (its default place): a copy
    of the disk then holds the key that opens everything else on it. None otherwise."""
    if settings.keys.provider != "local":
        return None
    data_dir = Path(settings.data_dir).expanduser().resolve()
    # Where deployments/keys.py puts it unless keys.options.root_key_path says otherwise.
    root_key = Path(settings.keys.options.get("root_key_path") or settings.keys_dir() / "root.key").expanduser().resolve()
    if not root_key.is_relative_to(data_dir):
        return None
    return (f"warning: the local key provider's root key ({root_key}) is inside the data dir ({data_dir}), so a "
            "stolen disk carries its own key; for production use keys.provider aws or pkcs11")


def cmd_serve(ns: argparse.Namespace) -> int:
    from vision.packs import resolve_pack

    config = read_config(ns.config)
    app = securegate_app(config)
    args = dict(app.args or {})
    if ns.models:
        args["models"] = ns.models
    if ns.data_dir:
        args["data_dir"] = str(Path(ns.data_dir).expanduser().resolve())
    warning = root_key_warning(Settings.from_args(args))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    # The pack is found (and fetched, with progress, if missing) here, before Ray starts: a missing pack is
    # one clear error on the terminal rather than every replica retrying, and replicas get its directory.
    pack = resolve_pack(args.get("models"))
    args["models"] = str(pack.root)
    ignored = f"{len(pack.ignored)} other file{'' if len(pack.ignored) == 1 else 's'} ignored"
    print(f"Model pack: {pack.root} (detector {pack.detector_path.name}, recognizer {pack.recognizer_path.name}, "
          f"{ignored}: see `securegate models`)", flush=True)
    # The admin token is generated here on first start (not in a replica) so it can be shown once, on the
    # operator's terminal rather than in logs.
    from tenancy.registry import load_or_create_admin_token

    data_dir = Settings.from_args(args).data_dir
    token, created = load_or_create_admin_token(data_dir, os.environ.get("SECUREGATE_ADMIN_TOKEN"))
    if created:
        print(f"Admin token (generated now, stored in {Path(data_dir) / 'admin_token'}, mode 0600):\n  {token}", flush=True)
    app.args = args
    if ns.host:
        config.http_options.host = ns.host
    if ns.port:
        config.http_options.port = ns.port
    http = config.http_options

    import ray
    from ray import serve

    stop = threading.Event()
    start_ray(include_dashboard=False)
    # After ray.init(): Ray's core worker installs its own SIGTERM handler (log + abort) during init.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        deploy(config)
        scheme = "https" if http.ssl_certfile else "http"
        base = f"{scheme}://{http.host}:{http.port}{app.route_prefix.rstrip('/')}"
        print(f"SecureGate is ready at {base}/  (API docs: {base}/docs)", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("shutting down", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0
