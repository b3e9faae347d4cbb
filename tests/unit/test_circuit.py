"""The breaker and the backoff of the IBKR connection, driven by a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from wealthalloc.brokers.circuit import Backoff, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_breaker_stays_closed_below_the_threshold() -> None:
    breaker = CircuitBreaker(3, 10, clock=FakeClock())
    breaker.record_failure("refused")
    breaker.record_failure("refused")
    assert breaker.state == "closed"
    assert breaker.allows_trial()
    assert breaker.failures == 2


def test_breaker_opens_after_consecutive_failures_and_keeps_the_reason() -> None:
    breaker = CircuitBreaker(3, 10, clock=FakeClock())
    for _ in range(3):
        breaker.record_failure("connection refused")
    assert breaker.state == "open"
    assert not breaker.allows_trial()
    assert breaker.last_error == "connection refused"
    assert breaker.describe() == {"state": "open", "failures": 3, "last_error": "connection refused"}


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(3, 10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_breaker_is_half_open_after_the_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(9.5)
    assert breaker.state == "open"
    assert breaker.seconds_until_trial() == pytest.approx(0.5)
    clock.advance(0.5)
    assert breaker.describe()["state"] == "half_open"
    assert breaker.allows_trial()
    assert breaker.seconds_until_trial() == 0


def test_a_success_in_half_open_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5, clock=clock)
    breaker.record_failure("timeout")
    clock.advance(5)
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.failures == 0
    assert breaker.last_error is None


def test_a_failed_trial_reopens_for_a_whole_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 5, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(6)
    assert breaker.state == "half_open"
    breaker.record_failure("still refused")
    assert breaker.describe()["state"] == "open"
    assert breaker.seconds_until_trial() == pytest.approx(5)


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1), (1, -1)])
def test_breaker_rejects_nonsense_settings(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, cooldown)


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 4)
    assert [backoff.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_backoff_next_counts_attempts_and_reset_starts_over() -> None:
    backoff = Backoff(1, 60, factor=3)
    assert [backoff.next() for _ in range(3)] == [1, 3, 9]
    assert backoff.attempt == 3
    backoff.reset()
    assert backoff.next() == 1


def test_backoff_jitter_only_shortens_a_delay() -> None:
    draws = iter([0.0, 0.5, 0.999])
    backoff = Backoff(2, 8, jitter=0.5, rand=lambda: next(draws))
    assert backoff.delay(1) == 4
    assert backoff.delay(1) == 3
    assert 2 < backoff.delay(1) < 2.01


def test_backoff_survives_a_very_long_outage() -> None:
    assert Backoff(1, 30).delay(10_000) == 30


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0, "cap": 1},
        {"initial": 1, "cap": 0},
        {"initial": 1, "cap": 2, "factor": 0.5},
        {"initial": 1, "cap": 2, "jitter": 2},
    ],
)
def test_backoff_rejects_nonsense_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_backoff_rejects_a_negative_attempt() -> None:
    with pytest.raises(ValueError):
        Backoff(1, 2).delay(-1)
