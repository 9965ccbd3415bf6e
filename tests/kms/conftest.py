"""Fixtures for the kms tests: a real moto KMS server and a real SoftHSM2 token (no result mocks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.conftest import free_port

SOFTHSM_TOKEN_LABEL = "securegate-test"
SOFTHSM_PIN = "1234"


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real moto server on a free port, with fake credentials; stopped at the end of the session."""
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_provider(moto_endpoint):
    from kms.providers.aws import AwsKmsProvider

    # A fresh alias per test keeps rotations in one test from leaking into another.
    return AwsKmsProvider(
        f"alias/securegate-root-{uuid.uuid4().hex[:8]}",
        region="us-east-1",
        endpoint_url=moto_endpoint,
        create_root_if_missing=True,
    )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory) -> dict:
    """A temp SoftHSM2 token. Fails (not skips) when SoftHSM2 is missing: `make test` installs it."""
    from kms.providers.pkcs11 import find_module

    util = shutil.which("softhsm2-util")
    module = find_module()
    if util is None or module is None:
        pytest.fail(
            "SoftHSM2 is required for the PKCS#11 tests (softhsm2-util / libsofthsm2.so not found). "
            "Install it with `apt-get install softhsm2` or run `make test`, which does."
        )
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    # Must be set before the PKCS#11 module is loaded: SoftHSM reads it at C_Initialize.
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", SOFTHSM_TOKEN_LABEL, "--pin", SOFTHSM_PIN, "--so-pin", "5678"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return {"module_path": module, "token_label": SOFTHSM_TOKEN_LABEL, "pin": SOFTHSM_PIN}


@pytest.fixture
def pkcs11_provider(softhsm):
    from kms.providers.pkcs11 import Pkcs11KeyProvider

    # A fresh root label prefix per test isolates rotations on the shared session token.
    return Pkcs11KeyProvider(
        softhsm["token_label"],
        module_path=softhsm["module_path"],
        pin=softhsm["pin"],
        root_label_prefix=f"securegate-root-{uuid.uuid4().hex[:6]}-v",
        create_root_if_missing=True,
    )


@pytest.fixture
def local_provider(tmp_path):
    from kms.providers.local import LocalKeyProvider

    return LocalKeyProvider(tmp_path / "keys" / "root.json")


@pytest.fixture
def closed_port() -> int:
    """A local port with nothing listening (connection refused at once)."""
    return free_port()
