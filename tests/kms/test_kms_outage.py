"""KMS outage: calls fail fast with ProviderUnavailable and the key store holds no partial tenant."""

from __future__ import annotations

import time

import apsw
import pytest
from moto.server import ThreadedMotoServer

from kms import KeyManager, Keyring, ProviderUnavailable
from kms.providers.aws import AwsKmsProvider
from kms_testutil import CallLog

FAST_FAIL = {"max_attempts": 2, "base_delay_s": 0.01, "connect_timeout_s": 0.5, "read_timeout_s": 1.0}


def row_counts(path) -> tuple[int, int]:
    db = apsw.Connection(str(path))
    try:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("tenants", "ceks"))
    finally:
        db.close()


def test_closed_port_fails_fast_without_partial_rows(moto_endpoint, closed_port, tmp_path):
    provider = AwsKmsProvider(region="us-east-1", endpoint_url=f"http://127.0.0.1:{closed_port}", **FAST_FAIL)
    keyring = Keyring(provider, tmp_path / "keystore.db")
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        keyring.create_tenant("acme")
    with pytest.raises(ProviderUnavailable):
        provider.check()
    assert time.monotonic() - started < 5
    assert row_counts(tmp_path / "keystore.db") == (0, 0)
    keyring.close()


def test_stopped_server_data_key_and_create_fail_fast(moto_endpoint, tmp_path):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    provider = AwsKmsProvider(
        "alias/outage-root", region="us-east-1", endpoint_url=f"http://{host}:{port}",
        create_root_if_missing=True, **FAST_FAIL,
    )
    keyring = Keyring(provider, tmp_path / "keystore.db", cache_ttl_s=0)  # no cache: every call needs KMS
    keyring.create_tenant("acme")
    assert keyring.data_key("acme").version == 1
    server.stop()

    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        keyring.data_key("acme")
    with pytest.raises(ProviderUnavailable):
        keyring.create_tenant("globex")
    with pytest.raises(ProviderUnavailable):
        keyring.rotate_tenant("acme")
    assert time.monotonic() - started < 10
    assert row_counts(tmp_path / "keystore.db") == (1, 1)  # only acme, untouched
    keyring.close()


def test_cache_rides_out_a_short_outage(moto_endpoint, tmp_path):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    provider = AwsKmsProvider(
        "alias/outage-cache", region="us-east-1", endpoint_url=f"http://{host}:{port}",
        create_root_if_missing=True, **FAST_FAIL,
    )
    keyring = Keyring(provider, tmp_path / "keystore.db", cache_ttl_s=60)
    keyring.create_tenant("acme")
    key = keyring.data_key("acme")
    server.stop()
    assert keyring.data_key("acme").key == key.key  # served from the TTL cache
    keyring.close()


def test_service_ready_reflects_outage(closed_port, tmp_path, moto_endpoint):
    log = CallLog()
    service = KeyManager(
        {"provider": "aws", "region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{closed_port}", **FAST_FAIL},
        str(tmp_path / "keystore.db"), observe=log,
    )
    assert service.ready() is False
    with pytest.raises(ProviderUnavailable):
        service.create_tenant("acme")
    assert log.errors["create_tenant"] == {"ProviderUnavailable": 1}
    assert log.errors["provider.generate_data_key"] == {"ProviderUnavailable": 1}
    service.close()
