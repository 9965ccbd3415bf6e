"""Operators' packaging, checked without a container runtime or a Kubernetes cluster (neither exists here):
the KubeRay manifest's Serve config is configs/cluster.yaml read through Serve's own schema; the manifest, the
Dockerfile and pyproject agree on Ray's version, Serve's environment, the extras and the node kinds.
Whether the import path resolves from the installed wheel is checked in tests/test_wheel.py."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from ray.serve.schema import ServeDeploySchema

from cli.serve import SERVE_ENVIRONMENT, load_serve_config

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "deploy" / "kuberay" / "rayservice.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def pods(spec: dict) -> list[dict]:
    cluster = spec["rayClusterConfig"]
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def test_manifest_serve_config_is_the_cluster_config():
    doc = manifest()
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    served = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    shipped = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "configs" / "cluster.yaml").read_text()))
    assert served.model_dump(exclude_unset=True) == shipped.model_dump(exclude_unset=True)
    # and SecureGate reads it the way `securegate serve --config` would
    args, options, _ = load_serve_config(REPO / "configs" / "cluster.yaml")
    assert served.applications[0].import_path == "graph:build_app" and args["data_dir"] == "/mnt/securegate"
    assert {"Ingress", "Detector", "Embedder"} <= options.keys()


def ray_requirement() -> Requirement:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(r for r in map(Requirement, deps) if r.name == "ray")


def test_one_ray_version_in_the_image_the_manifest_and_pyproject():
    spec = manifest()["spec"]
    version = spec["rayClusterConfig"]["rayVersion"]
    docker_arg = re.search(r"^ARG RAY_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M).group(1)
    assert docker_arg == version
    assert re.search(rf"^FROM rayproject/ray:\$\{{RAY_VERSION\}}-", DOCKERFILE.read_text(), re.M)
    assert ray_requirement().specifier.contains(version), (version, str(ray_requirement().specifier))
    for group in pods(spec):
        for container in group["template"]["spec"]["containers"]:
            assert container["image"].startswith("securegate:"), container["image"]


def test_dockerfile_installs_an_extra_that_exists_and_sets_serves_environment():
    text = DOCKERFILE.read_text()
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    flavour_default = re.search(r"^ARG FLAVOUR=(\S+)$", text, re.M).group(1)
    assert "[${FLAVOUR}]" in text and flavour_default in extras and "gpu" in extras
    env = dict(re.findall(r"(RAY_SERVE_\w+)=(\S+)", text))
    assert env == SERVE_ENVIRONMENT


def test_every_pod_has_serves_environment_the_data_volume_and_its_node_kind():
    spec = manifest()["spec"]
    served = yaml.safe_load(spec["serveConfigV2"])["applications"][0]
    data_dir = served["args"]["data_dir"]
    offered: set[str] = set()
    for group in pods(spec):
        resources = group["rayStartParams"].get("resources")
        if resources:
            offered |= json.loads(json.loads(resources)).keys()  # KubeRay wants a quoted JSON string
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in container["env"]}
            assert {k: env.get(k) for k in SERVE_ENVIRONMENT} == SERVE_ENVIRONMENT, container["name"]
            assert data_dir in {m["mountPath"] for m in container["volumeMounts"]}
    asked = {name for d in served["deployments"] for name in d.get("ray_actor_options", {}).get("resources", {})}
    asked |= served["args"]["tenancy"]["shard_actor_options"].get("resources", {}).keys()
    assert asked and asked <= offered, (asked, offered)
