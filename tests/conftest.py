"""Shared test fixtures: the real model pack and photos from ../shared, one Ray cluster per session.

Ray starts only for tests that ask for it (kms and store tests run without it). The cluster has logical
GPUs so the GPU config's placement is exercised for real, and Serve listens on a free port (never 8000).

Tiers (docs/testing.md): each test is marked by what it needs, from the fixtures it uses where they tell
(pytest_collection_modifyitems below), by an explicit mark where they cannot; a test with none is `fast`.
"""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SECUREGATE_SHARED", REPO.parent / "shared"))
LOGICAL_GPUS = 2


# What a test needs beyond the repo, ../shared and SoftHSM2, as pytest markers (registered in pyproject.toml).
# A test with none of them is `fast`: `make test-fast` runs exactly those.
NEEDS = ("app", "browser", "rtsp", "network", "own_cluster")
# Any of these fixtures, directly or through another fixture, means the session's Ray cluster (and mostly the app).
RAY_FIXTURES = frozenset({"ray_cluster", "serve_port", "app", "http"})
BROWSER_FIXTURES = frozenset({"browser"})
# axe-core comes from the npm registry the first time (tests/axe.py).
NETWORK_FIXTURES = frozenset({"axe_source"})
# node id -> its tiers, for every test this session collected (before `-m` deselects any): tests/test_tiers.py.
COLLECTED_TIERS = pytest.StashKey[dict]()


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))  # the closure: fixtures of fixtures included
        if used & RAY_FIXTURES:
            item.add_marker(pytest.mark.app)
        if used & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if used & NETWORK_FIXTURES:
            item.add_marker(pytest.mark.network)
        if not any(item.get_closest_marker(need) for need in NEEDS):
            item.add_marker(pytest.mark.fast)
    config.stash[COLLECTED_TIERS] = {item.nodeid: {m.name for m in item.iter_markers() if m.name in ("fast", *NEEDS)}
                                     for item in items}


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        pytest.fail(f"{what} not found at {path}: tests run on the real development data in ../shared", pytrace=False)
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _require_dir(Path(os.environ.get("SECUREGATE_MODELS", SHARED / "models")).resolve(), "model pack")


@pytest.fixture(scope="session")
def faces_root() -> Path:
    return _require_dir(SHARED / "faces", "face photos")


@pytest.fixture(scope="session")
def manifest(faces_root) -> list[dict]:
    """Rows of manifest.csv with `file` (absolute Path), `identity`, `faces` (int)."""
    with open(faces_root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {"file": SHARED / r["path"], "identity": r["identity"], "faces": int(r["faces_in_image"])}
        for r in rows
    ]


@pytest.fixture(scope="session")
def identity_photos(manifest) -> dict[str, list[Path]]:
    """identity → its one-face photos under identities/."""
    out: dict[str, list[Path]] = {}
    for row in manifest:
        if "/identities/" in str(row["file"]):
            out.setdefault(row["identity"], []).append(row["file"])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """Where Ray's metrics agent serves Prometheus text for this node."""
    return free_port()


@pytest.fixture(scope="session")
def ray_cluster(metrics_port):
    import ray
    from ray import serve

    from cli.serve import start_ray

    # Logical CPUs: replicas mostly wait on each other in tests; 2 real cores do the work. Serve's data path
    # as `securegate serve` ships it (cli.serve.SERVE_ENVIRONMENT).
    start_ray(num_cpus=16, num_gpus=LOGICAL_GPUS, include_dashboard=False, log_to_driver=False,
             _metrics_export_port=metrics_port)
    try:
        yield ray
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def serve_port(ray_cluster) -> int:
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("securegate-data")


@pytest.fixture(scope="session")
def app(serve_port, models_dir, data_dir):
    """The SecureGate application as `securegate serve` runs it: (ingress handle, base URL)."""
    from ray import serve

    from graph import build_app

    handle = serve.run(
        build_app({"models": str(models_dir), "data_dir": str(data_dir)}),
        name="securegate",
        route_prefix="/",
    )
    return handle, f"http://127.0.0.1:{serve_port}"


@pytest.fixture(scope="session")
def http(app):
    import httpx

    with httpx.Client(base_url=app[1], timeout=120) as client:
        yield client
