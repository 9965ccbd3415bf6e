"""The `securegate` command line against the running application (admin commands talk HTTP)."""

import contextlib
import functools
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

from cli import main as cli
from tests.model_packs import LANDMARK_AND_ATTRIBUTE, build_pack

REPO = Path(__file__).resolve().parents[1]


def run(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    return code, out.getvalue()


def test_models_reports_the_active_pack(models_dir):
    code, out = run("models", "--models", str(models_dir))
    info = json.loads(out)
    assert code == 0 and info["name"] == "mobilefacenet_arcface_w128" and info["dim"] == 128
    assert "CPUExecutionProvider" in info["available_providers"] and info["threshold_is_guess"] is False
    assert info["ignored"] == [{"file": "mobilefacenet_arcface_w128_batch1.onnx",
                                "reason": "another recognizer is used (mobilefacenet_arcface_w128.onnx)"}]


# The stand-in for InsightFace's model zoo: `securegate` runs in a subprocess whose insightface download URL
# (insightface.utils.storage.MODEL_ZOO_RELEASE_DOWNLOAD_URL) is replaced by a 127.0.0.1 address of the test's.
RUN_WITH_STANDIN_ZOO = (
    "import sys, insightface.utils.storage as zoo; zoo.MODEL_ZOO_RELEASE_DOWNLOAD_URL = sys.argv[1]; "
    "from cli.main import main; sys.exit(main(sys.argv[2:]))"
)


def run_fresh_user(zoo_url: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    """`securegate ARGS` as a new user runs it: HOME is an empty dir, no SECUREGATE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECUREGATE_", "RAY_ADDRESS"))}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-c", RUN_WITH_STANDIN_ZOO, zoo_url, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_serve_without_a_reachable_pack_exits_with_one_line_before_ray(tmp_path):
    """Offline, nothing in ~/.insightface: `securegate serve` says what to do in one line and exits non-zero
    before Ray starts (no replica retries), having written nothing (no admin token)."""
    with socket.socket() as s:  # a port nothing listens on: the unreachable zoo
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    started = time.monotonic()
    result = run_fresh_user(f"http://127.0.0.1:{closed}/", tmp_path, "serve", "--port", str(closed))
    took = time.monotonic() - started
    errors = [line for line in result.stderr.splitlines() if line.startswith("securegate:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert f"could not download model pack antelopev2 from http://127.0.0.1:{closed}/antelopev2.zip" in errors[0]
    assert "Connection refused" in errors[0]
    assert str(tmp_path / ".insightface" / "models" / "antelopev2") in errors[0]
    assert "SECUREGATE_MODELS=buffalo_l" in errors[0]
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "ray" not in output.lower() and len(output.splitlines()) <= 6, output
    assert not (tmp_path / ".securegate").exists() and took < 120


def test_serve_warns_that_a_local_root_key_in_the_data_dir_travels_with_the_disk(tmp_path):
    """The default `local` key provider keeps its root key under the data dir: `securegate serve` says so in
    one line at start (here the run then stops at the unreachable model pack, before Ray)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    data = tmp_path / "data"
    result = run_fresh_user(f"http://127.0.0.1:{closed}/", tmp_path, "serve", "--data-dir", str(data))
    warnings = [line for line in result.stderr.splitlines() if "stolen disk" in line]
    assert warnings == [f"warning: the local key provider's root key ({data / 'keys' / 'root.key'}) is inside the "
                        f"data dir ({data}), so a stolen disk carries its own key; for production use keys.provider "
                        "aws or pkcs11"], result.stderr[-3000:]
    assert result.returncode == 2 and result.stderr.index("stolen disk") < result.stderr.index("securegate:")


def test_no_root_key_warning_when_the_key_is_elsewhere(tmp_path):
    from cli.serve import root_key_warning
    from securegate.settings import Settings

    data = str(tmp_path / "data")
    assert root_key_warning(Settings(data_dir=data)) is not None
    elsewhere = {"provider": "local", "options": {"root_key_path": str(tmp_path / "usb" / "root.key")}}
    assert root_key_warning(Settings(data_dir=data, keys=elsewhere)) is None
    inside = {"provider": "local", "options": {"root_key_path": f"{data}/sub/../keys/mine.key"}}
    assert root_key_warning(Settings(data_dir=data, keys=inside)) is not None
    kms = {"provider": "aws", "options": {"key_id": "alias/securegate"}}
    assert root_key_warning(Settings(data_dir=data, keys=kms)) is None


class StandinModelZoo(http.server.SimpleHTTPRequestHandler):
    """Stand-in for InsightFace's release downloads: serves the test's zip files from 127.0.0.1."""

    requests: list[str] = []

    def do_GET(self):
        StandinModelZoo.requests.append(self.path)
        super().do_GET()

    def log_message(self, *_):
        pass


def test_models_fetches_the_default_pack_with_progress_and_finds_the_nested_folder(models_dir, tmp_path):
    """A new user online: antelopev2.zip (laid out as published: antelopev2/*.onnx inside) is fetched
    through insightface's downloader with a progress bar, unpacks to antelopev2/antelopev2/, and the
    detector and glintr100 are found there, the landmark and attribute models listed as ignored."""
    zoo = tmp_path / "zoo"
    pack_dir = build_pack(tmp_path / "build" / "antelopev2", "antelopev2", models_dir)
    zoo.mkdir()
    with zipfile.ZipFile(zoo / "antelopev2.zip", "w") as zf:
        for path in sorted(pack_dir.iterdir()):
            zf.write(path, f"antelopev2/{path.name}")
    home = tmp_path / "home"
    home.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(StandinModelZoo, directory=str(zoo)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StandinModelZoo.requests.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        first = run_fresh_user(url, home, "models")
        again = run_fresh_user(url, home, "models")
    finally:
        server.shutdown()
        server.server_close()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "100%" in first.stderr  # insightface's tqdm bar
    info = json.loads(first.stdout[first.stdout.index("{"):])
    assert info["root"] == str(home / ".insightface" / "models" / "antelopev2" / "antelopev2")
    assert (info["detector"], info["recognizer"], info["dim"]) == ("scrfd_10g_bnkps.onnx", "glintr100.onnx", 512)
    assert info["default_threshold"] == 0.6 and info["threshold_is_guess"] is False
    assert {i["file"] for i in info["ignored"]} == set(LANDMARK_AND_ATTRIBUTE)
    # Fetched once: the second run finds the nested folder on disk.
    assert again.returncode == 0 and json.loads(again.stdout)["root"] == info["root"]
    assert StandinModelZoo.requests == ["/antelopev2.zip"]


def test_tenants_lifecycle(app, http, data_dir):
    http.get("/v1/readyz")
    # No --admin-token: the CLI reads the token the service generated into its data dir.
    common = ["--url", app[1], "--data-dir", str(data_dir)]
    code, out = run("tenants", "create", "cli-made", "--settings", '{"default_threshold": 0.5}', *common)
    created = json.loads(out)
    assert code == 0 and created["api_key"].startswith("sg_")
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    assert http.get("/v1/persons", headers=auth).status_code == 200

    # `show`: where its shard actor runs (activated by the call above), from Ray's actor table.
    import ray

    code, out = run("tenants", "show", created["tenant_id"], *common)
    shown = json.loads(out)
    assert code == 0 and shown["tenant_id"] == created["tenant_id"] and shown["active"] is True
    (shard,) = shown["shards"]
    assert shard["shard"] == 0 and shard["state"] == "ALIVE" and shard["pid"] > 0
    assert shard["node_id"] == ray.get_runtime_context().get_node_id() and shard["node_ip"]

    code, out = run("tenants", "list", *common)
    listed = {t["tenant_id"]: t for t in json.loads(out)}
    assert code == 0 and listed[created["tenant_id"]]["settings"]["default_threshold"] == 0.5

    code, out = run("tenants", "rotate-key", created["tenant_id"], *common)
    assert code == 0 and http.get("/v1/persons", headers=auth).status_code == 401
    new_auth = {"Authorization": f"Bearer {json.loads(out)['api_key']}"}
    assert http.get("/v1/persons", headers=new_auth).status_code == 200

    code, _ = run("tenants", "delete", created["tenant_id"], *common)
    assert code == 0 and http.get("/v1/persons", headers=new_auth).status_code == 401
    code, out = run("tenants", "delete", created["tenant_id"], *common)
    assert code == 1 and json.loads(out)["error"]["code"] == "not_found"


def test_openapi_and_docs_pages_are_served(http):
    schema = http.get("/openapi.json").json()
    assert {"/v1/search", "/v1/persons/{person_id}/faces", "/v1/tenants", "/v1/audit"} <= set(schema["paths"])
    search_errors = schema["paths"]["/v1/search"]["post"]["responses"]
    assert {"400", "401", "413", "422", "429", "503"} <= set(search_errors)
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
