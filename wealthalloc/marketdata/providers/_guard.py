"""What stands between the platform and a provider's HTTP API: budget, timeout, retries, breaker.

Each provider publishes a request budget (Alpha Vantage's free key: 5 a
minute; Polygon's paid plans: thousands). Going over it gets answers that
cost as much as real ones and carry nothing, or a banned key, so the budget
is enforced on our side, before the request, by the same Redis token bucket
that limits API callers (:class:`~wealthalloc.storage.rate_limiter.RateLimiter`):
every replica and the CLI draw on one budget per provider. Without Redis
(a dead one, a unit test) the bucket lives in this process's memory instead,
so a replica never exceeds the budget on its own.

A transient failure (timeout, refused connection, 5xx) is retried with
exponential backoff and jitter; after the retries the provider's
:class:`~wealthalloc.brokers.circuit.CircuitBreaker` counts one failure, and
once it opens the provider is skipped outright until its cool-down ends, so
a provider that is down costs the quote path nothing but a dictionary read.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from wealthalloc.brokers.circuit import Backoff, CircuitBreaker
from wealthalloc.logging import get_logger
from wealthalloc.marketdata.providers._base import (
    CircuitOpen,
    MalformedAnswer,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SymbolNotFound,
)
from wealthalloc.security.rate_limits import Decision, Limit
from wealthalloc.storage.rate_limiter import LocalRateLimiter, RateLimiter

log = get_logger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

_REDIS_DOWN = (redis.exceptions.RedisError, OSError)


@dataclass(frozen=True)
class GuardPolicy:
    """How one provider is called; :func:`~wealthalloc.marketdata.providers.policy` reads it from settings.

    Attributes
    ----------
    name : str
        The provider, as quotes name their ``source`` and limiter keys name the budget.
    requests_per_minute : int
        The provider's documented budget, shared by every process through Redis.
    timeout_s : float
        Longest wait for one answer (connect plus read), on top of httpx's own timeouts.
    retries : int
        Further attempts after a transient failure; each one spends budget too.
    backoff_initial_s, backoff_max_s : float
        The first retry delay and its cap; delays double and lose up to half to jitter.
    breaker_failures : int
        Consecutive failed calls (after their retries) that open the breaker.
    breaker_cooldown_s : float
        How long an open breaker skips the provider before one trial call.
    """

    name: str
    requests_per_minute: int
    timeout_s: float = 2.5
    retries: int = 1
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 4.0
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0

    @property
    def limit(self) -> Limit:
        # The provider's name in braces: a Redis Cluster hash tag, one slot per provider budget.
        return Limit(key=f"rl:provider:{{{self.name}}}", capacity=self.requests_per_minute, period_s=60)


class SharedLimiter:
    """Provider budgets in Redis when it answers, in this process's memory when it does not."""

    def __init__(self, redis: aioredis.Redis | None, *, clock: Callable[[], float] = time.time) -> None:
        self._remote = RateLimiter(redis) if redis is not None else None
        self._local = LocalRateLimiter(max_keys=1000)
        self._clock = clock

    async def take(self, limit: Limit) -> Decision:
        """Spend one request of ``limit``; the decision says whether it may go and when to retry."""
        if self._remote is not None:
            try:
                return await self._remote.take(limit)
            except _REDIS_DOWN as exc:
                log.warning("provider_limiter_redis_down", key=limit.key, error=str(exc))
        return self._local.take(limit, self._clock())


class ProviderGuard:
    """Runs one provider call under its budget, timeout, retries and circuit breaker.

    Parameters
    ----------
    policy : GuardPolicy
    limiter : SharedLimiter
        Shared by every guard of a process (and, through Redis, of the fleet).
    breaker : CircuitBreaker, optional
        Built from the policy when omitted; passed in by tests that move its clock.
    sleep : callable, default=asyncio.sleep
        Awaited between retries and while waiting for budget; tests pass a recorder.
    rand : callable, default=random.random
        The backoff's jitter source.
    """

    def __init__(
        self,
        policy: GuardPolicy,
        limiter: SharedLimiter,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.breaker = breaker or CircuitBreaker(policy.breaker_failures, policy.breaker_cooldown_s)
        self._limiter = limiter
        self._sleep = sleep
        self._rand = rand

    @property
    def name(self) -> str:
        return self.policy.name

    async def call(self, operation: Callable[[], Awaitable[T]], *, wait_for_budget: bool = False) -> T:
        """``operation()`` under the guard.

        ``wait_for_budget=False`` (the quote path): a spent budget or a 429 is
        :class:`RateLimited` at once, so the chain's next link answers
        without delay. ``True`` (history downloads): wait for the budget to
        refill and retry a 429 after its ``Retry-After``, because the caller
        wants this provider's data and has time.
        """
        if not self.breaker.allows_trial():
            raise CircuitOpen(
                self.name,
                f"circuit open for {self.breaker.seconds_until_trial():.1f} s more"
                f" after: {self.breaker.last_error}",
            )
        backoff = Backoff(
            self.policy.backoff_initial_s, self.policy.backoff_max_s, jitter=0.5, rand=self._rand
        )
        attempt = 0
        while True:
            await self._spend(wait_for_budget)
            try:
                # asyncio.timeout, not wait_for: no extra task per call (measurable on the quote path).
                async with asyncio.timeout(self.policy.timeout_s):
                    result = await operation()
            except TimeoutError as exc:
                timed_out = ProviderUnavailable(self.name, f"no answer within {self.policy.timeout_s:g} s")
                timed_out.__cause__ = exc
                failure: ProviderUnavailable | None = timed_out
            except ProviderUnavailable as exc:
                failure = exc
            except RateLimited as exc:
                if not wait_for_budget or attempt >= self.policy.retries:
                    raise
                attempt += 1
                await self._sleep(exc.retry_after_s if exc.retry_after_s is not None else backoff.next())
                continue
            except SymbolNotFound:
                self.breaker.record_success()  # it answered, correctly, that it has no such symbol
                raise
            except (MalformedAnswer, ProviderRejected) as exc:
                self.breaker.record_failure(str(exc))
                raise
            else:
                self.breaker.record_success()
                return result
            assert failure is not None
            if attempt >= self.policy.retries:
                self.breaker.record_failure(str(failure))
                raise failure
            attempt += 1
            delay = backoff.next()
            log.info("provider_retry", provider=self.name, attempt=attempt, delay_s=round(delay, 3))
            await self._sleep(delay)

    async def _spend(self, wait: bool) -> None:
        while True:
            decision = await self._limiter.take(self.policy.limit)
            if decision.allowed:
                return
            if not wait:
                raise RateLimited(
                    self.name,
                    f"our budget of {self.policy.requests_per_minute}/min is spent;"
                    f" retry in {decision.retry_after_s} s",
                    retry_after_s=float(decision.retry_after_s),
                )
            await self._sleep(float(decision.retry_after_s))
