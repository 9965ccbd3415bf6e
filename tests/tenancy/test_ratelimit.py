import pytest

from securegate.errors import retry_after_header
from tenancy.ratelimit import RateLimited, RateLimiter, TokenBucket


def test_bucket_allows_the_burst_then_the_rate():
    bucket = TokenBucket(rate_per_s=2.0, burst=3, updated=0.0)
    for _ in range(3):
        bucket.take(now=0.0)
    with pytest.raises(RateLimited) as info:
        bucket.take(now=0.0)
    assert info.value.retry_after_s == pytest.approx(0.5)
    bucket.take(now=0.5)  # one token accrued
    with pytest.raises(RateLimited):
        bucket.take(now=0.6)
    bucket.take(now=10.0)
    assert bucket.tokens == pytest.approx(2.0)  # refilled to the burst, minus the one just taken


def test_limiter_is_per_tenant_and_follows_settings():
    limiter = RateLimiter()
    limiter.take("a", 1.0, 1)
    with pytest.raises(RateLimited):
        limiter.take("a", 1.0, 1)
    limiter.take("b", 1.0, 1)  # another tenant has its own bucket
    limiter.take("a", 1.0, 5)  # new limits: a fresh bucket
    for _ in range(100):
        limiter.take("c", None, 1)  # unlimited


def test_retry_after_is_whole_seconds_at_least_one():
    assert retry_after_header(0.01) == "1" and retry_after_header(2.2) == "3"
