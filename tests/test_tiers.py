"""The test tiers (docs/testing.md): tests/conftest.py marks each test by what it needs, from the fixtures it
uses (explicit marks where a fixture cannot tell), and `make test-fast` runs the tests marked `fast`. Checked
on the whole suite as `make test` collects it, on tests whose needs are known."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import COLLECTED_TIERS, NEEDS, REPO

# node id -> the tier markers it must carry, and why it is known to need them.
KNOWN = {
    # pure computation in files of pure tests
    "tests/test_eval.py::test_eer_with_a_known_overlap": {"fast"},
    "tests/tenancy/test_chain.py::test_intact_chain": {"fast"},
    # pure tests in files whose other tests use the app: the tier is per test, not per file
    "tests/test_overload.py::test_backpressure_is_503_overloaded_with_retry_after": {"fast"},
    "tests/test_tls.py::test_ray_internal_grpc_tls": {"own_cluster"},
    # SoftHSM2 and a moto server in-process: no Ray, so fast
    "tests/kms/test_kms_pkcs11.py::test_round_trip": {"fast"},
    "tests/kms/test_kms_aws.py::test_generate_unwrap_round_trip": {"fast"},
    # the `http` fixture (the session app)
    "tests/test_api.py::test_health_and_readiness": {"app"},
    # only through a module fixture that uses ray_cluster (a second app copy)
    "tests/test_keys_api.py::test_kms_outage_is_a_503_and_writes_nothing": {"app"},
    # only through a module fixture that uses serve_port
    "tests/test_overload.py::test_concurrent_images_past_the_budget_get_503_at_once": {"app"},
    "tests/test_console.py::test_console_flow_in_a_real_browser": {"app", "browser", "network"},  # axe-core from npm
    "tests/streams/test_cameras.py::test_rtsp_camera_cut_mid_stream_reconnects": {"app", "rtsp"},
    "tests/test_install.py::test_gpu_extra_resolves_against_pypi_without_cuda": {"network"},
    "tests/test_multinode.py::test_cluster_config_places_by_resources_and_heals_a_lost_index_node": {"own_cluster"},
    "tests/streams/test_multinode_cameras.py::test_a_camera_whose_node_dies_resumes_on_another_model_node": {"own_cluster"},
    # a StreamService over real files and keys, Ray's handles stood in for: no Ray, so fast
    "tests/streams/test_unknowns.py::test_reidentification_through_the_service_keeps_the_file_to_the_cap": {"fast"},
    "tests/test_wheel.py::test_installed_securegate_serves_https_from_the_tls_config_and_answers_a_search": {"own_cluster"},
    "tests/test_make_serve.py::test_make_serve_from_a_fresh_copy_serves": {"network", "own_cluster"},
}

# Print the tiers of every test once collection is done; nothing runs.
COLLECT = """
import json, sys, pytest
from tests.conftest import COLLECTED_TIERS
class Report:
    def pytest_collection_finish(self, session):
        print("TIERS " + json.dumps({k: sorted(v) for k, v in session.config.stash[COLLECTED_TIERS].items()}))
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[Report()]))
"""


def suite_tiers(config: pytest.Config) -> dict[str, set[str]]:
    """node id -> tiers of the whole suite: this session's collection when it collected the whole suite (`make
    test`, `make test-fast`), else a collection in a fresh interpreter (about 10 s of imports)."""
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return config.stash[COLLECTED_TIERS]
    done = subprocess.run([sys.executable, "-c", COLLECT], cwd=REPO, capture_output=True, text=True, timeout=300)
    line = next((x for x in done.stdout.splitlines() if x.startswith("TIERS ")), None)
    assert done.returncode == 0 and line, done.stdout[-3000:] + done.stderr[-3000:]
    return {node: set(tiers) for node, tiers in json.loads(line[len("TIERS "):]).items()}


def test_tiers_of_known_tests_and_the_size_of_the_fast_tier(request):
    tiers = suite_tiers(request.config)
    wrong = {node: (sorted(tiers.get(node, {"not collected"})), sorted(want)) for node, want in KNOWN.items()
             if tiers.get(node) != want}
    assert not wrong, f"tier markers (found, expected): {wrong}"
    # Every test is in exactly one of: the fast tier, or one or more needs.
    assert all(("fast" in t) != bool(t & set(NEEDS)) for t in tiers.values())
    fast = [node for node, t in tiers.items() if t == {"fast"}]
    assert len(fast) >= 150, f"`make test-fast` runs {len(fast)} tests"
