"""KeyManager: config building, concurrency bound, its timing hook, readiness."""

from __future__ import annotations

import threading
import time

import pytest

from kms import KeyManager, build_provider
from kms.providers.local import LocalKeyProvider
from kms_testutil import CallLog


def test_build_provider_validates_config(tmp_path):
    assert isinstance(build_provider({"provider": "local", "root_key_path": str(tmp_path / "r.json")}), LocalKeyProvider)
    with pytest.raises(ValueError, match="must be one of"):
        build_provider({"provider": "vault"})
    with pytest.raises(ValueError, match="unknown local provider option"):
        build_provider({"provider": "local", "root_key_path": str(tmp_path / "r.json"), "roto_key": 1})


def test_service_round_trip_metrics_and_ready(tmp_path):
    log = CallLog()
    service = KeyManager({"provider": "local", "root_key_path": str(tmp_path / "root.json")}, str(tmp_path / "ks.db"),
                         observe=log)
    assert service.ready() is True
    service.create_tenant("acme")
    for _ in range(5):
        key = service.data_key("acme")
    assert service.rotate_tenant("acme") == 2 and service.versions("acme") == [1, 2]
    assert service.status()["tenant_count"] == 1
    assert log.calls["data_key"] == 5
    assert log.calls["provider.generate_data_key"] == 1
    assert "provider.unwrap" not in log.calls  # the TTL cache absorbed the burst
    assert log.seconds["data_key"] > 0
    assert key.version == 1
    service.close()


class SlowProvider(LocalKeyProvider):
    """A real local provider whose unwrap takes a while, so concurrency is observable."""

    in_flight = 0
    peak = 0
    _lock = threading.Lock()

    def unwrap(self, wrapped, context):
        with self._lock:
            SlowProvider.in_flight += 1
            SlowProvider.peak = max(SlowProvider.peak, SlowProvider.in_flight)
        time.sleep(0.05)
        try:
            return super().unwrap(wrapped, context)
        finally:
            with self._lock:
                SlowProvider.in_flight -= 1


def test_service_bounds_concurrent_provider_calls(tmp_path):
    provider = SlowProvider(tmp_path / "root.json")
    log = CallLog()
    service = KeyManager(
        {"max_concurrent_provider_calls": 2, "cache_ttl_s": 0}, str(tmp_path / "ks.db"), provider=provider, observe=log
    )
    tenants = [f"t{n}" for n in range(8)]
    for tenant in tenants:
        service.create_tenant(tenant)
    threads = [threading.Thread(target=service.data_key, args=(t,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert SlowProvider.peak == 2
    assert log.calls["provider.unwrap"] == 8
    service.close()
