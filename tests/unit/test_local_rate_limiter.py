"""Token buckets: the budgets (wealthalloc.security.rate_limits) and the in-process fallback limiter.

Only ``LocalRateLimiter`` and the pure ``_decision`` arithmetic it shares with the Redis limiter are
exercised here; the Redis script is covered by the integration tests.
"""

from __future__ import annotations

import math
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.config import Settings
from wealthalloc.security.access import Principal, Role
from wealthalloc.security.rate_limits import Decision, Limit, login_ip_limit, request_limit
from wealthalloc.storage.rate_limiter import LocalRateLimiter, _decision

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a fixed clock for every test
USER = uuid.UUID("00000000-0000-4000-8000-000000000001")
KEY = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def _settings() -> Settings:
    return Settings(
        rate_limit_standard=60, rate_limit_premium=120, rate_limit_api_key=1000, login_ip_per_minute=10
    )


def _principal(tier: str = "standard", api_key_id: uuid.UUID | None = None) -> Principal:
    return Principal(
        user_id=USER, email="alice@example.com", role=Role.INVESTOR, tier=tier, api_key_id=api_key_id
    )


# Budgets ----------------------------------------------------------------------------------------


def test_a_limit_refills_its_whole_capacity_over_its_period() -> None:
    assert Limit("k", capacity=60).refill_per_s == 1.0
    assert Limit("k", capacity=120).refill_per_s == 2.0
    assert Limit("k", capacity=10, period_s=5).refill_per_s == 2.0


def test_a_standard_user_gets_the_standard_budget_in_their_own_bucket() -> None:
    limit = request_limit(_principal(), _settings())

    assert limit == Limit(f"rl:user:{{{USER}}}", 60)


def test_a_premium_user_gets_the_premium_budget() -> None:
    assert request_limit(_principal(tier="premium"), _settings()).capacity == 120


def test_an_api_key_has_its_own_bucket_and_budget_whatever_the_tier() -> None:
    limit = request_limit(_principal(tier="premium", api_key_id=KEY), _settings())

    assert limit == Limit(f"rl:key:{{{USER}}}:{KEY}", 1000)
    assert limit.key != request_limit(_principal(tier="premium"), _settings()).key


def test_a_users_buckets_share_a_redis_cluster_hash_tag() -> None:
    person = request_limit(_principal(), _settings()).key
    key = request_limit(_principal(api_key_id=KEY), _settings()).key

    assert f"{{{USER}}}" in person
    assert f"{{{USER}}}" in key


def test_logins_are_limited_per_ip_address() -> None:
    assert login_ip_limit("203.0.113.9", _settings()) == Limit("rl:login-ip:{203.0.113.9}", 10)
    assert login_ip_limit("2001:db8::1", _settings()).key == "rl:login-ip:{2001:db8::1}"


def test_a_decision_reports_itself_in_the_rate_limit_headers() -> None:
    decision = Decision(allowed=True, limit=60, remaining=12, reset_epoch_s=1_767_225_660, retry_after_s=0)

    assert decision.headers() == {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "12",
        "X-RateLimit-Reset": "1767225660",
    }


# The decision arithmetic ------------------------------------------------------------------------


def test_an_allowed_decision_reports_whole_tokens_left_and_when_the_bucket_is_full() -> None:
    decision = _decision(Limit("k", 60), allowed=True, tokens=58.4, now_s=T0, cost=1)

    assert decision == Decision(
        allowed=True, limit=60, remaining=58, reset_epoch_s=math.ceil(T0 + 1.6), retry_after_s=0
    )


def test_a_refused_decision_says_how_long_until_enough_tokens_are_back() -> None:
    decision = _decision(Limit("k", 60), allowed=False, tokens=0.25, now_s=T0, cost=1)

    assert not decision.allowed
    assert decision.remaining == 0
    assert decision.retry_after_s == 1
    assert decision.reset_epoch_s == math.ceil(T0 + 59.75)


def test_a_refused_decision_waits_for_the_whole_cost_at_the_refill_rate() -> None:
    half_per_second = Limit("k", 30)

    assert _decision(half_per_second, allowed=False, tokens=0.0, now_s=T0, cost=1).retry_after_s == 2
    assert _decision(half_per_second, allowed=False, tokens=0.0, now_s=T0, cost=5).retry_after_s == 10
    assert _decision(half_per_second, allowed=False, tokens=4.5, now_s=T0, cost=5).retry_after_s == 1


def test_a_refused_decision_never_says_retry_now() -> None:
    decision = _decision(Limit("k", 60), allowed=False, tokens=0.9999, now_s=T0, cost=1)

    assert decision.retry_after_s >= 1


def test_a_full_bucket_resets_now() -> None:
    decision = _decision(Limit("k", 60), allowed=True, tokens=60.0, now_s=T0 + 0.4, cost=0)

    assert decision.reset_epoch_s == math.ceil(T0 + 0.4)
    assert decision.remaining == 60


# The local limiter ------------------------------------------------------------------------------


def test_a_new_caller_may_burst_up_to_the_capacity_and_no_further() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("rl:user:{a}", 5)

    decisions = [limiter.take(limit, T0) for _ in range(6)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert all(d.limit == 5 for d in decisions)


def test_a_refused_request_says_when_to_retry_and_when_the_bucket_is_full() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", 60)  # one token a second
    for _ in range(60):
        limiter.take(limit, T0)

    refused = limiter.take(limit, T0)

    assert not refused.allowed
    assert refused.retry_after_s == 1
    assert refused.reset_epoch_s == math.ceil(T0 + 60)


def test_an_allowed_request_does_not_ask_anyone_to_wait() -> None:
    assert LocalRateLimiter().take(Limit("k", 60), T0).retry_after_s == 0


def test_tokens_come_back_at_the_steady_rate() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", 60)
    for _ in range(60):
        limiter.take(limit, T0)

    assert not limiter.take(limit, T0 + 0.5).allowed
    assert limiter.take(limit, T0 + 1.0).allowed
    assert not limiter.take(limit, T0 + 1.0).allowed
    assert [limiter.take(limit, T0 + 4.0).allowed for _ in range(4)] == [True, True, True, False]


def test_a_refused_request_costs_nothing() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", 60)
    for _ in range(60):
        limiter.take(limit, T0)
    for _ in range(100):
        limiter.take(limit, T0 + 0.5)

    assert limiter.take(limit, T0 + 1.0).allowed


def test_after_a_whole_period_an_exhausted_bucket_allows_a_full_burst_again() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", 60)
    for _ in range(60):
        limiter.take(limit, T0)

    later = [limiter.take(limit, T0 + 60).allowed for _ in range(61)]

    assert later == [True] * 60 + [False]


def test_a_long_idle_caller_still_gets_no_more_than_the_capacity() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", 10)
    limiter.take(limit, T0)

    burst = [limiter.take(limit, T0 + 86_400).allowed for _ in range(11)]

    assert burst == [True] * 10 + [False]


def test_a_clock_that_steps_backwards_adds_no_tokens() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", 60)
    for _ in range(60):
        limiter.take(limit, T0)

    assert not limiter.take(limit, T0 - 30).allowed
    assert not limiter.take(limit, T0 - 29.5).allowed


def test_a_request_may_cost_several_tokens() -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", 10)

    assert limiter.take(limit, T0, cost=7).remaining == 3
    refused = limiter.take(limit, T0, cost=4)
    assert not refused.allowed
    assert refused.remaining == 3
    assert limiter.take(limit, T0, cost=3).allowed


def test_each_bucket_key_has_its_own_budget() -> None:
    limiter = LocalRateLimiter()
    alice, bob = Limit("rl:user:{alice}", 2), Limit("rl:user:{bob}", 2)
    limiter.take(alice, T0)
    limiter.take(alice, T0)

    assert not limiter.take(alice, T0).allowed
    assert limiter.take(bob, T0).allowed


def test_separate_limiters_do_not_share_buckets() -> None:
    limit = Limit("k", 1)
    first, second = LocalRateLimiter(), LocalRateLimiter()
    first.take(limit, T0)

    assert not first.take(limit, T0).allowed
    assert second.take(limit, T0).allowed


def test_memory_stays_bounded_by_forgetting_every_bucket_when_full() -> None:
    limiter = LocalRateLimiter(max_keys=2)
    a, b, c = Limit("a", 1), Limit("b", 1), Limit("c", 1)
    limiter.take(a, T0)
    limiter.take(b, T0)
    assert not limiter.take(a, T0).allowed

    limiter.take(c, T0)  # a third caller: the table is full, so it starts afresh

    assert limiter.take(a, T0).allowed


@pytest.mark.parametrize("capacity", [1, 7, 60, 120, 1000])
def test_the_remaining_count_after_a_full_burst_is_zero_for_any_capacity(capacity: int) -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", capacity)

    last = [limiter.take(limit, T0) for _ in range(capacity)][-1]

    assert last.allowed
    assert last.remaining == 0


# Properties ------------------------------------------------------------------------------------


@given(
    capacity=st.integers(min_value=1, max_value=500),
    costs=st.lists(st.integers(min_value=1, max_value=20), max_size=200),
)
def test_at_a_fixed_instant_no_more_than_the_capacity_is_ever_allowed(
    capacity: int, costs: list[int]
) -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", capacity)

    allowed = sum(cost for cost in costs if limiter.take(limit, T0, cost=cost).allowed)

    assert allowed <= capacity


@given(
    capacity=st.integers(min_value=1, max_value=200),
    period_s=st.integers(min_value=1, max_value=120),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=30, allow_nan=False), st.integers(1, 5)), max_size=200
    ),
)
def test_over_any_stretch_of_time_no_more_than_capacity_plus_refill_is_allowed(
    capacity: int, period_s: int, steps: list[tuple[float, int]]
) -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", capacity, period_s)
    now = T0
    allowed = 0
    for gap, cost in steps:
        now += gap
        decision = limiter.take(limit, now, cost=cost)
        allowed += cost if decision.allowed else 0
        assert 0 <= decision.remaining <= capacity
        assert decision.allowed or decision.retry_after_s >= 1

    assert allowed <= capacity + (now - T0) * limit.refill_per_s + 1e-6


@given(capacity=st.integers(min_value=1, max_value=500), extra=st.integers(min_value=1, max_value=10))
def test_a_fresh_caller_gets_exactly_its_capacity_at_once(capacity: int, extra: int) -> None:
    limiter = LocalRateLimiter()
    limit = Limit("k", capacity)

    allowed = [limiter.take(limit, T0).allowed for _ in range(capacity + extra)]

    assert allowed == [True] * capacity + [False] * extra
