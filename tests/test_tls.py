"""TLS end to end, with certificates made here (tests/certs.py):

1. HTTPS on the Serve proxy from configs/tls.yaml, through `securegate serve` in its own process (http_options
   are per Serve instance; the session's Serve speaks plain HTTP).
2. Ray's internal gRPC TLS (RAY_USE_TLS=1 ...) on a `ray start` cluster of its own, stopped by PID.
3. mTLS: configs/nginx-mtls.conf in front of the session's Serve app.

Every process started here is stopped here, by PID (never Ray's stop command: it would kill other clusters on the host).
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.certs import CertificateAuthority
from tests.conftest import REPO, free_port
from tests.processes import process_tree, stop_pids

BIN = Path(sys.executable).parent


def short_tmpdir() -> Path:
    """Ray's unix sockets live under its temp dir and must stay < 108 chars: pytest's tmp_path is too long."""
    return Path(tempfile.mkdtemp(prefix="sgtls-", dir="/tmp"))


# ------------------------------------------------------------------------------------ process helpers
def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None
    return proc.returncode


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def base_env(**extra: str) -> dict[str, str]:
    """The test's environment minus anything that would point a child at another cluster or turn TLS on."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


# ------------------------------------------------------------------------------------------ 1. HTTPS
@pytest.mark.own_cluster
def test_serve_https_from_tls_config(tmp_path, models_dir):
    from ray.serve.config import HTTPOptions

    ca = CertificateAuthority.create().write(tmp_path / "ca")
    server = ca.issue("localhost", hosts=["localhost", "127.0.0.1"], server=True).write(tmp_path / "server")

    config = yaml.safe_load((REPO / "configs" / "tls.yaml").read_text())
    http_options = config["http_options"]
    assert {"ssl_certfile", "ssl_keyfile"} <= http_options.keys(), "configs/tls.yaml must configure HTTPS"
    HTTPOptions(**http_options)  # the shipped file is a valid Serve HTTPOptions
    with pytest.raises(ValueError, match="must be provided together"):
        HTTPOptions(host="127.0.0.1", ssl_certfile=str(server.cert_path))  # the documented constraint
    http_options.update(ssl_certfile=str(server.cert_path), ssl_keyfile=str(server.key_path))
    config_path = tmp_path / "tls.yaml"
    config_path.write_text(yaml.safe_dump(config))

    port = free_port()
    ray_tmp = short_tmpdir()
    log = tmp_path / "serve.log"
    env = base_env(
        RAY_ADDRESS="local",            # a fresh local Ray even if another cluster is discoverable
        RAY_TMPDIR=str(ray_tmp),        # its session (and so its processes' command lines) under a unique dir
    )
    cmd = [sys.executable, "-m", "cli.main", "serve", "--config", str(config_path), "--port", str(port),
           "--models", str(models_dir), "--data-dir", str(tmp_path / "data")]
    base = f"https://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, f"securegate serve exited ({proc.returncode}):\n{tail(log)}"
            assert time.monotonic() < deadline, f"HTTPS never answered:\n{tail(log)}"
            try:
                r = httpx.get(f"{base}/v1/healthz", verify=str(ca.cert_path), timeout=5)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert r.json() == {"status": "ok"}
        assert r.http_version == "HTTP/1.1" and r.url.scheme == "https"

        # Plain HTTP to the HTTPS port: the TLS server closes the connection without an HTTP answer.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/v1/healthz", timeout=10)
        # The certificate really is checked: the system trust store does not know the test CA.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{base}/v1/healthz", timeout=10)
    finally:
        # SIGTERM (what operators and process managers send): the CLI runs serve.shutdown() and ray.shutdown().
        code = stop_process(proc, signal.SIGTERM, timeout=60)
        deadline = time.monotonic() + 10
        while process_tree(str(ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = process_tree(str(ray_tmp))
        stop_pids(leftovers)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert code == 0, f"securegate serve did not stop cleanly on SIGTERM ({code}):\n{tail(log)}"
    assert not leftovers, f"Ray processes outlived `securegate serve`: {leftovers}"


# --------------------------------------------------------------------------------- 2. Ray gRPC TLS
DRIVER = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)

@ray.remote
def double(x):
    return 2 * x

print("RESULT", ray.get(double.remote(21), timeout=60), flush=True)
ray.shutdown()
"""


def _node_hosts() -> list[str]:
    """Names and addresses Ray processes dial one another by: all must be in the node certificate's SAN."""
    from ray._common.network_utils import node_ip_address_from_perspective

    hosts = ["localhost", "127.0.0.1", socket.gethostname(), node_ip_address_from_perspective()]
    return list(dict.fromkeys(h for h in hosts if h))


@pytest.mark.own_cluster
def test_ray_internal_grpc_tls(tmp_path):
    temp_dir = short_tmpdir()
    pki = temp_dir / "pki"
    ca = CertificateAuthority.create("SecureGate Ray CA").write(pki / "ca")
    # One certificate per node, for both directions: Ray's gRPC TLS is mutual (every process is client and server).
    node = ca.issue("ray-node", hosts=_node_hosts(), server=True, client=True).write(pki / "node")
    plain_env = base_env(RAY_AUTH_MODE="token")
    tls_env = {**plain_env, "RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(node.cert_path),
               "RAY_TLS_SERVER_KEY": str(node.key_path), "RAY_TLS_CA_CERT": str(ca.cert_path)}

    port = free_port()
    address = f"127.0.0.1:{port}"
    (tmp_path / "driver.py").write_text(DRIVER)
    start = [str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "1",
             "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp_dir / "ray"),
             "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())]
    try:
        started = subprocess.run(start, env=tls_env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, f"ray start failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"

        # The GCS port speaks TLS with a certificate from our CA (and negotiates gRPC's h2).
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        context.load_cert_chain(str(node.cert_path), str(node.key_path))
        context.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                peer = tls.getpeercert()
                assert dict(x[0] for x in peer["subject"])["commonName"] == "ray-node"
                assert tls.selected_alpn_protocol() == "h2"

        # A driver with the TLS environment joins and runs a task.
        ok = subprocess.run([sys.executable, str(tmp_path / "driver.py"), address], env=tls_env,
                            capture_output=True, text=True, timeout=120)
        assert "RESULT 42" in ok.stdout, f"TLS driver failed ({ok.returncode}):\n{ok.stdout}\n{ok.stderr[-3000:]}"

        # A driver without it cannot even reach the GCS: it retries until we give up on it.
        plain = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), address], env=plain_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = plain.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            plain.kill()
            out, _ = plain.communicate()
        assert "RESULT" not in out, f"a driver without TLS ran a task on the TLS cluster:\n{out}"
        assert "Connected to Ray cluster" not in out
    finally:
        stop_pids(process_tree(str(temp_dir)), grace=3)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not process_tree(str(temp_dir))


# -------------------------------------------------------------------------------------- 3. nginx mTLS
def render_nginx_conf(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    assert "@" not in "".join(line.split("#")[0] for line in template.splitlines()), "unfilled placeholder"
    return template


def mtls_client(base: str, ca: CertificateAuthority, client=None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    if client is not None:
        context.load_cert_chain(str(client.cert_path), str(client.key_path))
    return httpx.Client(base_url=base, verify=context, timeout=120)


def refused(client: httpx.Client) -> str:
    """nginx's answer to a connection without an acceptable client certificate: 400 + its reason, or (if the
    TLS layer gives up first) the transport error."""
    try:
        r = client.get("/v1/healthz")
    except httpx.TransportError as exc:
        return f"transport error: {exc!r}"
    assert r.status_code == 400, f"expected nginx to refuse, got {r.status_code}: {r.text[:200]}"
    return r.text


def test_nginx_mtls_front(tmp_path, app, http, manifest):
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        pytest.fail("nginx is not installed: `make test` installs it (apt-get install nginx)", pytrace=False)
    assert http.get("/v1/healthz").status_code == 200  # the upstream itself is up
    upstream = app[1].removeprefix("http://")

    ca = CertificateAuthority.create("SecureGate client CA").write(tmp_path / "pki" / "ca")
    server = ca.issue("localhost", hosts=["localhost", "127.0.0.1"], server=True).write(tmp_path / "pki" / "server")
    good = ca.issue("tenant-a", client=True).write(tmp_path / "pki" / "tenant-a")
    rogue_ca = CertificateAuthority.create("Somebody else's CA").write(tmp_path / "pki" / "rogue-ca")
    rogue = rogue_ca.issue("tenant-a", client=True).write(tmp_path / "pki" / "rogue")

    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    port = free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(render_nginx_conf(
        (REPO / "configs" / "nginx-mtls.conf").read_text(),
        USER=pwd.getpwuid(os.geteuid()).pw_name, RUN_DIR=str(run_dir), LISTEN=f"127.0.0.1:{port}",
        SERVER_CERT=str(server.cert_path), SERVER_KEY=str(server.key_path), CLIENT_CA=str(ca.cert_path),
        UPSTREAM=upstream,
    ))
    cmd = [nginx, "-p", str(run_dir), "-e", str(run_dir / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    checked = subprocess.run([*cmd[:-2], "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"nginx exited ({proc.returncode}):\n{tail(run_dir / 'error.log')}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"nginx never listened:\n{tail(run_dir / 'error.log')}"
                time.sleep(0.1)
        base = f"https://127.0.0.1:{port}"

        with mtls_client(base, ca, good) as client:
            r = client.get("/v1/healthz")
            assert r.status_code == 200 and r.json() == {"status": "ok"}
            row = next(r for r in manifest if r["faces"] == 1)
            image = base64.b64encode(row["file"].read_bytes()).decode()
            r = client.post("/v1/detect", json={"image": image})
            assert r.status_code == 200, r.text
            assert len(r.json()["faces"]) == 1

        with mtls_client(base, ca) as client:
            answer = refused(client)
            assert "transport error" in answer or "No required SSL certificate was sent" in answer, answer

        with mtls_client(base, ca, rogue) as client:
            answer = refused(client)
            assert "transport error" in answer or "The SSL certificate error" in answer, answer

    finally:
        code = stop_process(proc, signal.SIGQUIT, timeout=15)  # graceful: finish in-flight requests
    assert code is not None, "nginx did not stop on SIGQUIT"
