"""The per-client token bucket (:class:`pipeline.session.RateLimiter`), on a fake clock."""

from __future__ import annotations

import pytest

from pipeline.session import RateLimiter
from schemas import ErrorCode, OverloadedError
from tests.support.clock import Clock


def test_a_client_gets_its_rate_at_once_then_one_as_each_comes_back() -> None:
    clock = Clock(100.0)
    limiter = RateLimiter(6, "call offers", clock=clock)  # one every 10 s
    for _ in range(6):
        limiter.check("addr:a")
    with pytest.raises(OverloadedError) as refused:
        limiter.check("addr:a")
    error = refused.value
    assert error.code is ErrorCode.RATE_LIMITED and error.http_status == 429
    assert error.transient and error.retry_after_ms == 10_000
    assert "6 call offers a minute" in error.message
    clock.now += 5.0  # half a token back: still refused, and told the rest
    with pytest.raises(OverloadedError) as again:
        limiter.check("addr:a")
    assert again.value.retry_after_ms == 5_000
    clock.now += 5.0
    limiter.check("addr:a")


def test_clients_are_counted_apart_and_a_refusal_takes_nothing() -> None:
    clock = Clock(100.0)
    limiter = RateLimiter(1, "offers", clock=clock)
    limiter.check("addr:a")
    limiter.check("addr:b")
    for _ in range(5):  # refused tries do not push the next token further away
        with pytest.raises(OverloadedError):
            limiter.check("addr:a")
    clock.now += 60.0
    limiter.check("addr:a")


def test_a_bucket_never_holds_more_than_the_rate() -> None:
    clock = Clock(100.0)
    limiter = RateLimiter(2, "offers", clock=clock)
    limiter.check("addr:a")
    clock.now += 3600.0  # an hour idle refills to two, not to 120
    limiter.check("addr:a")
    limiter.check("addr:a")
    with pytest.raises(OverloadedError):
        limiter.check("addr:a")


def test_memory_is_bounded_by_dropping_the_least_recent_client() -> None:
    clock = Clock(100.0)
    limiter = RateLimiter(1, "offers", max_clients=3, clock=clock)
    for client in ("a", "b", "c"):
        limiter.check(client)
    limiter.check("d")  # "a" is forgotten: it may start again
    assert len(limiter) == 3
    limiter.check("a")
    with pytest.raises(OverloadedError):
        limiter.check("d")


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, "offers")
