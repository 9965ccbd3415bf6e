"""Serve config files: valid for Serve and for SecureGate, and the GPU one really placed on GPUs."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.serve import load_serve_config
from securegate.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml"))
DEPLOYMENTS = {"Ingress", "Detector", "Embedder", "KeyService", "TenantSupervisor", "StreamSupervisor"}


def app_config(path: Path) -> tuple[dict, dict[str, dict]]:
    """(app args, {deployment: options}) of the config's application, read through Serve's schema as the CLI reads it."""
    args, options, _ = load_serve_config(path)
    return args, options


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


def shard_actor_options(path: Path) -> dict:
    """What TenantService passes to every shard actor for this config (config args over Settings defaults)."""
    args, _ = app_config(path)
    return Settings.from_args(args).tenancy.shard_actor_options


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shard_actors_get_their_blas_threads_explicitly(path):
    """Ray would set OMP_NUM_THREADS from the actor's small num_cpus (one thread): every config (and the default
    it falls back to) names the index's BLAS/OpenMP threads instead."""
    env = shard_actor_options(path).get("runtime_env", {}).get("env_vars", {})
    assert int(env["OMP_NUM_THREADS"]) >= 2 and int(env["OPENBLAS_NUM_THREADS"]) >= 2, env
    assert Settings().tenancy.shard_actor_options["runtime_env"]["env_vars"]["OPENBLAS_NUM_THREADS"] == "2"


@pytest.mark.parametrize("name", ["local.yaml", "tls.yaml"])
def test_one_machine_configs_reserve_at_most_two_cores(name):
    """The minimum replicas of every deployment plus four active tenants' shard actors fit a 2-core laptop."""
    _, options = app_config(REPO / "configs" / name)
    reserved = 0.0
    for deployment in DEPLOYMENTS:
        opts = options.get(deployment, {})
        replicas = opts.get("num_replicas") or opts.get("autoscaling_config", {}).get("min_replicas", 1)
        reserved += replicas * opts.get("ray_actor_options", {}).get("num_cpus", 0.1)  # 0.1: code defaults
    reserved += 4 * shard_actor_options(REPO / "configs" / name)["num_cpus"]
    assert reserved <= 2.0, reserved


def test_shard_actor_created_as_local_yaml_says_runs_blas_on_its_threads(ray_cluster, tmp_path):
    """A real TenantShardActor created with local.yaml's options, as TenantService does: the BLAS and OpenMP
    pools loaded in it (threadpoolctl) have the configured threads, not the one Ray derives from num_cpus."""
    import ray

    from tenancy.actors import NAMESPACE, TenantShardActor

    def pools(actor_state) -> dict:
        import numpy  # noqa: F401  (numpy's OpenBLAS is what the exact tier runs on)
        from threadpoolctl import threadpool_info

        import tenancy.index  # noqa: F401  (faiss: its OpenBLAS and OpenMP)

        return {(p["internal_api"], p["filepath"]): p["num_threads"] for p in threadpool_info()}

    options = shard_actor_options(REPO / "configs" / "local.yaml")
    wanted = int(options["runtime_env"]["env_vars"]["OPENBLAS_NUM_THREADS"])
    actor = TenantShardActor.options(name="tenant-shard:threads-check", namespace=NAMESPACE, **options).remote(
        "threads-check", str(tmp_path), "synthetic", 8, None, None)
    try:
        seen = ray.get(actor.__ray_call__.remote(pools), timeout=120)
    finally:
        ray.kill(actor)
    assert {api for api, _ in seen} >= {"openblas", "openmp"}, seen
    assert set(seen.values()) == {wanted}, seen


def test_serve_build_accepts_the_graph(tmp_path):
    out = tmp_path / "built.yaml"
    subprocess.run([str(Path(sys.executable).parent / "serve"), "build", "graph:app", "-o", str(out)],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    built = yaml.safe_load(out.read_text())
    assert {d["name"] for d in built["applications"][0]["deployments"]} == DEPLOYMENTS


def test_a_config_of_before_the_renames_keeps_its_actor_options_and_is_told_its_deployment_names():
    """Names from before issue 24: `tenancy.index_actor_options` is still read; the deployments' old names are
    refused by name (as `serve run` refuses them), not their options dropped in silence."""
    import graph

    old = {"tenancy": {"index_actor_options": {"num_cpus": 0.5}}}  # the key's name before issue 24
    assert Settings.from_args(old).tenancy.shard_actor_options == {"num_cpus": 0.5}
    old_names = {"TenantRouter": {"num_replicas": 2}, "StreamRouter": {}}  # the deployments' names before issue 24
    with pytest.raises(ValueError, match=r"\['StreamRouter', 'TenantRouter'\] name no deployment"):  # issue 24
        graph.bind_app({}, {**old_names, "Ingress": {}})
    assert graph.bind_app({}, {"TenantSupervisor": {"num_replicas": 2}}) is not None


def test_cli_reads_a_config_like_serve_run():
    args, options, http = load_serve_config(str(REPO / "configs" / "local.yaml"))
    assert options["Embedder"]["user_config"]["max_batch_size"] == 32
    assert http["port"] == 8000 and "limits" in args


def test_gpu_config_places_replicas_on_logical_gpus(ray_cluster, serve_port, models_dir, tmp_path_factory):
    """configs/gpu.yaml on a cluster with logical GPUs: detector, embedder and shard actors get GPU slices
    (ONNX Runtime falls back to CPU here, and says so), and the app answers."""
    import httpx
    from ray import serve

    from graph import bind_app

    args, options = app_config(REPO / "configs" / "gpu.yaml")
    data_dir = tmp_path_factory.mktemp("gpu-app")
    args.update(models=str(models_dir), data_dir=str(data_dir))
    serve.run(bind_app(args, options), name="securegate-gpu", route_prefix="/gpu")
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
            supervisor = serve.get_deployment_handle("TenantSupervisor", app_name="securegate-gpu")
            tenant = supervisor.authenticate.remote(created["api_key"]).result()
            info = supervisor.tenant_info.remote(tenant.tenant_id).result()
            assert info["placement"]["gpu_ids"], info  # the shard actor holds a GPU slice
    finally:
        serve.delete("securegate-gpu")
