"""Past its latency budget SecureGate answers at once with 503 `overloaded` and Retry-After, instead of queueing
callers for seconds: a Detector replica refuses an image whose expected time there (the queue ahead of it at the
replica's recent service time, then its detection and embedding) would pass `admission.latency_budget_s`
(deployments/admission.py), and never one that would not wait. Here a second copy of the app, one Detector
replica detecting one image at a time with a tight budget, is driven with 8 concurrent images through HTTP, and
then with one image at a time."""

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from ray.serve.exceptions import BackPressureError

from deployments.admission import HEADROOM, LatencyBudget
from deployments.routes.common import error_response
from securegate import errors


def test_backpressure_is_503_overloaded_with_retry_after():
    """Serve's own queue limit (the backstop in front of the replica) answers the same way."""
    mapped = errors.to_api_error(BackPressureError(num_queued_requests=9, max_queued_requests=8))
    assert (mapped.status, mapped.code) == (503, "overloaded")
    assert error_response(mapped).headers["Retry-After"] == "1"


def admitted_until_refused(budget: LatencyBudget) -> tuple[int, errors.Overloaded]:
    admitted = 0
    while True:
        try:
            budget.admit()
        except errors.Overloaded as refused:
            return admitted, refused
        admitted += 1


def test_the_budget_refuses_by_expected_wait_not_by_count():
    budget = LatencyBudget(budget_s=1.0, servers=2)
    budget.served(0.2)
    budget.embedded(0.05)
    admitted, refused = admitted_until_refused(budget)
    # Two run at once; each one waiting adds half a service time: 0.25 + 0.1 * waiting <= 0.75 for 5 waiting.
    assert admitted == 2 + 5
    assert budget.expected_s() == pytest.approx(0.25 + 0.1 * 6)
    assert refused.details["retry_after_s"] == pytest.approx(budget.expected_s() - HEADROOM, abs=1e-3)
    # Images twice as fast, no embedding: 0.1 + 0.05 * waiting <= 0.75 holds 13 waiting.
    fast = LatencyBudget(budget_s=1.0, servers=2)
    fast.served(0.1)
    assert admitted_until_refused(fast)[0] == 2 + 13


def test_an_image_that_would_not_wait_is_never_refused():
    budget = LatencyBudget(budget_s=0.01, servers=1)
    budget.served(5.0)  # far slower than the budget
    budget.admit()
    budget.left()
    budget.admit()  # the slot is free again
    with pytest.raises(errors.Overloaded):
        budget.admit()


@pytest.fixture(scope="module")
def small_app(serve_port, models_dir, tmp_path_factory):
    from ray import serve

    from graph import bind_app

    settings = {"models": str(models_dir), "data_dir": str(tmp_path_factory.mktemp("overload-data")),
                "detector": {"concurrency": 1}, "admission": {"latency_budget_s": 0.05}}
    serve.run(bind_app(settings, {"Detector": {"num_replicas": 1}}), name="overload", route_prefix="/overload")
    try:
        yield f"http://127.0.0.1:{serve_port}/overload"
    finally:
        serve.delete("overload")


def test_concurrent_images_past_the_budget_get_503_at_once(small_app, identity_photos):
    body = {"image": base64.b64encode(identity_photos["obama"][0].read_bytes()).decode()}
    with httpx.Client(base_url=small_app, timeout=60) as http:
        for _ in range(3):  # one at a time: never refused, however tight the budget
            assert http.post("/v1/detect", json=body).status_code == 200

        def one(_):
            started = time.perf_counter()
            r = http.post("/v1/detect", json=body)
            return r, time.perf_counter() - started

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
    ok = [t for r, t in answers if r.status_code == 200]
    refused = [(r, t) for r, t in answers if r.status_code != 200]
    assert ok and refused, [r.status_code for r, _ in answers]
    for r, _ in refused:
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
        assert r.headers["Retry-After"] == "1"
    # Refused at once: faster than the slowest accepted image, which waited its turn.
    assert min(t for _, t in refused) < max(ok)
