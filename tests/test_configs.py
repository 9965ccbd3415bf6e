"""Serve config files: valid for Serve and for SecureGate, and the GPU one really placed on GPUs."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from securegate.cli import load_serve_config
from securegate.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml"))
DEPLOYMENTS = {"Ingress", "Detector", "Embedder", "KeyService", "TenantRouter"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_is_valid_for_serve_and_securegate(path):
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(path.read_text())
    ServeDeploySchema.parse_obj(raw)  # Serve's own schema: what `serve deploy` / `serve run` check
    (app,) = raw["applications"]
    assert app["import_path"] == "graph:build_app"
    Settings.from_args(app.get("args"))  # our settings: unknown keys are refused
    names = {d["name"] for d in app.get("deployments", [])}
    assert names <= DEPLOYMENTS, names - DEPLOYMENTS
    for d in app.get("deployments", []):
        if d["name"] == "Embedder":
            # @serve.batch can only fill a batch when enough requests may be in flight.
            assert d["max_ongoing_requests"] >= d["user_config"]["max_batch_size"]


def test_serve_build_accepts_the_graph(tmp_path):
    out = tmp_path / "built.yaml"
    subprocess.run([str(Path(sys.executable).parent / "serve"), "build", "graph:app", "-o", str(out)],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    built = yaml.safe_load(out.read_text())
    assert {d["name"] for d in built["applications"][0]["deployments"]} == DEPLOYMENTS


def test_cli_reads_a_config_like_serve_run():
    args, options, http = load_serve_config(str(REPO / "configs" / "local.yaml"))
    assert options["Embedder"]["user_config"]["max_batch_size"] == 32
    assert http["port"] == 8000 and "limits" in args


def test_gpu_config_places_replicas_on_logical_gpus(ray_cluster, serve_port, models_dir, tmp_path_factory):
    """configs/gpu.yaml on a cluster with logical GPUs: detector, embedder and index actors get GPU slices
    (ONNX Runtime falls back to CPU here, and says so), and the app answers."""
    import httpx
    from ray import serve

    from graph import build_app

    args, options, _ = load_serve_config(str(REPO / "configs" / "gpu.yaml"))
    data_dir = tmp_path_factory.mktemp("gpu-app")
    args.update(models=str(models_dir), data_dir=str(data_dir))
    serve.run(build_app(args, options), name="securegate-gpu", route_prefix="/gpu")
    try:
        for name in ("Detector", "Embedder"):
            handle = serve.get_deployment_handle(name, app_name="securegate-gpu")
            infos = [handle.info.remote().result() for _ in range(8)]
            assert all(info["gpu_ids"] for info in infos), infos
            assert all(info["providers"] == ["CPUExecutionProvider"] for info in infos)
        status = serve.status().applications["securegate-gpu"].deployments
        for name in ("Detector", "Embedder"):
            expected = options[name].get("num_replicas")
            if expected in (None, "auto"):
                expected = options[name]["autoscaling_config"]["min_replicas"]
            assert status[name].replica_states.get("RUNNING") == expected
        with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}/gpu", timeout=120) as http:
            admin = {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}
            http.get("/v1/readyz")
            created = http.post("/v1/tenants", json={"name": "gpu"}, headers=admin).json()
            router = serve.get_deployment_handle("TenantRouter", app_name="securegate-gpu")
            tenant = router.authenticate.remote(created["api_key"]).result()
            info = router.call.remote(tenant, "info").result()
            assert info["placement"]["gpu_ids"], info  # the index actor holds a GPU slice
    finally:
        serve.delete("securegate-gpu")
