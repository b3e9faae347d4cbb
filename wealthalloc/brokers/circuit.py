"""A circuit breaker and an exponential backoff, with the clock passed in.

A broker connection that keeps failing should stop taking orders at once
instead of letting each one wait for a timeout: the breaker opens after a run
of consecutive failures, lets one trial through after a cool-down
(half-open), and closes on the first success. The backoff spaces reconnect
attempts so that a gateway that restarts is not hammered, and its jitter
keeps a pool of connections from retrying in lockstep.

Both are plain objects driven by the caller; nothing here sleeps or starts a
task, so tests move a fake clock instead of waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]


class CircuitBreaker:
    """Closed, open after ``failure_threshold`` consecutive failures, half-open after ``cooldown_seconds``."""

    def __init__(
        self, failure_threshold: int, cooldown_seconds: float, *, clock: Clock = time.monotonic
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must not be negative")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_seconds:
            return "half_open"
        return "open"

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def allows_trial(self) -> bool:
        """Whether an attempt may be made now: always when closed, once the cool-down is over when open."""
        return self.state != "open"

    def seconds_until_trial(self) -> float:
        """How long an open breaker still refuses attempts; 0 when it does not."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_seconds - self._clock())

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._last_error = None

    def record_failure(self, error: str | None = None) -> None:
        """Count a failure; a failed trial in half-open reopens for a whole new cool-down."""
        self._failures += 1
        self._last_error = error
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()

    def describe(self) -> dict[str, object]:
        return {"state": self.state, "failures": self._failures, "last_error": self._last_error}


class Backoff:
    """``initial * factor**attempt`` seconds, never more than ``cap``, optionally shortened by jitter.

    ``jitter`` is the largest fraction taken off a delay (0: none, 1: anything
    down to zero), drawn from ``rand`` so tests can fix it.
    """

    def __init__(
        self,
        initial: float,
        cap: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or cap <= 0:
            raise ValueError("initial and cap must be positive")
        if factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        self.initial = initial
        self.cap = max(cap, initial)
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    def delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (0-based), without changing any state."""
        if attempt < 0:
            raise ValueError("attempt must not be negative")
        # Capped exponent: a long outage must not overflow the float.
        exponent = min(attempt, 64)
        base = min(self.cap, self.initial * self.factor**exponent)
        if self.jitter:
            base *= 1 - self.jitter * self._rand()
        return base

    def next(self) -> float:
        """The delay before the next attempt, counting it."""
        value = self.delay(self._attempt)
        self._attempt += 1
        return value

    def reset(self) -> None:
        self._attempt = 0
