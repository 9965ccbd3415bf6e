"""Past its latency budget SecureGate answers at once with 503 `overloaded` and Retry-After, instead of queueing
callers for seconds: the Ingress refuses an image whose expected time at the Detector (its images in flight at
the detection stage's recent time per image) would pass `admission.latency_budget_s` (deployments/admission.py),
and never one that finds nothing in flight. Here a second Ingress over one Detector replica detecting one image
at a time, with a tight budget, is driven with one image at a time, then with 8 concurrent images through HTTP,
then through the Python client, which retries the refusals."""

import base64
import math
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from ray.serve.exceptions import BackPressureError

from deployments.admission import HEADROOM, LatencyBudget
from deployments.routes.common import error_response
from securegate import errors


def test_backpressure_is_503_overloaded_with_retry_after():
    """Serve's own queue limit (the backstop in front of the Detector) answers the same way."""
    mapped = errors.to_api_error(BackPressureError(num_queued_requests=9, max_queued_requests=8))
    assert (mapped.status, mapped.code) == (503, "overloaded")
    assert error_response(mapped).headers["Retry-After"] == "1"


class Clock:
    """A stand-in clock the test moves by hand (LatencyBudget reads the time only through it)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_refuses_by_expected_wait_not_by_count():
    clock = Clock()
    budget = LatencyBudget(budget_s=1.0, clock=clock)
    for _ in range(4):  # four images in flight; the stage answers one every 0.09 s
        budget.admit()
    for _ in range(4):
        clock.now += 0.09
        budget.done()
        budget.admit()
    assert budget.per_image_s == pytest.approx(0.09)
    # Admitted while (in flight + 1) x 0.09 s <= 0.7 s (HEADROOM of the budget): up to 7 in flight.
    with pytest.raises(errors.Overloaded) as refused:
        while True:
            budget.admit()
    assert budget.in_flight == 7
    assert refused.value.details["retry_after_s"] == pytest.approx(max(0.1, budget.expected_s() - HEADROOM), abs=1e-3)
    # A stage twice as fast holds twice the images within the same budget: (n + 1) x 0.045 <= 0.7, n <= 14.
    fast = LatencyBudget(budget_s=1.0, clock=clock)
    fast.admit()
    clock.now += 0.045
    fast.done()
    with pytest.raises(errors.Overloaded):
        while True:
            fast.admit()
    assert fast.in_flight == 15


def test_an_image_that_finds_nothing_in_flight_is_never_refused():
    clock = Clock()
    budget = LatencyBudget(budget_s=0.01, clock=clock)
    budget.admit()
    clock.now += 5.0  # far slower than the budget
    budget.done()
    budget.admit()  # nothing in flight: admitted
    with pytest.raises(errors.Overloaded):
        budget.admit()


@pytest.fixture(scope="module")
def small_app(app, serve_port, models_dir, tmp_path_factory):
    """Its own Ingress and small Detector; the session app's Embedder, TenantSupervisor and KeyService are borrowed
    (only /v1/detect is called here), so two replicas start instead of a whole second app's six."""
    from ray import serve

    from deployments.detector import Detector
    from deployments.ingress import Ingress
    from securegate.settings import Settings

    data_dir = tmp_path_factory.mktemp("overload-data")
    settings = Settings.from_args({"models": str(models_dir), "data_dir": str(data_dir), "detector": {"concurrency": 1},
                                   "admission": {"latency_budget_s": 0.05}}).model_dump()
    borrowed = {name: serve.get_deployment_handle(name, "securegate") for name in ("Embedder", "TenantSupervisor", "KeyService")}
    detector = Detector.options(num_replicas=1).bind(settings)
    serve.run(Ingress.bind(settings, detector, borrowed["Embedder"], borrowed["TenantSupervisor"], borrowed["KeyService"]),
              name="overload", route_prefix="/overload")
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
        error = r.json()["error"]
        assert r.status_code == 503 and error["code"] == "overloaded"
        # Retry-After is the expected wait until the images in flight fit the budget (the refusal's retry_after_s),
        # in whole seconds, at least 1: over 1 s on a loaded host, where one detection takes over half a second.
        assert error["retry_after_s"] > 0 and r.headers["Retry-After"] == str(max(1, math.ceil(error["retry_after_s"])))
    # Refused at once: faster than the slowest accepted image, which waited its turn.
    assert min(t for _, t in refused) < max(ok)


class _CountingTransport(httpx.HTTPTransport):
    """httpx's own transport, keeping the status of every answer (to see the client's retries)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


def test_the_client_retries_overloaded_until_served(small_app, identity_photos):
    """Concurrent images through SecureGateClient with its default retry policy: the refusals (503 overloaded)
    are sent again after Retry-After, and every image is detected. 4 images: this small app admits one image at
    a time (its budget is below one detection), so 4 are the load per unit of capacity that 8 were against the
    Detector of capacity 1 + 1 queued this test was written for; 8 need more serial detection time, on a loaded
    host (0.45 s per image measured), than the policy's 4 attempts span (about 4.5 s)."""
    from securegate.client import SecureGateClient

    images = 4
    transport = _CountingTransport()
    with SecureGateClient(small_app, transport=transport) as sg:
        with ThreadPoolExecutor(images) as pool:
            answers = list(pool.map(lambda _: sg.detect(identity_photos["obama"][0]), range(images)))
    assert all(len(faces) == 1 for faces in answers)
    assert transport.statuses.count(503) >= 1 and transport.statuses.count(200) == images, transport.statuses
