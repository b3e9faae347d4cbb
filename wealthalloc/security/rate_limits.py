"""How many requests a caller may make: the per-minute budgets of the seed, as token buckets.

A token bucket of ``capacity`` tokens refilled at ``capacity`` per minute lets
a client burst up to its whole minute's budget and then go on at the steady
rate, rather than being cut off at a fixed window's edge and allowed a double
burst across it.
"""

from __future__ import annotations

from dataclasses import dataclass

from wealthalloc.config import Settings
from wealthalloc.security.access import Principal


@dataclass(frozen=True)
class Limit:
    """``capacity`` requests per ``period_s`` seconds for one bucket ``key``."""

    key: str
    capacity: int
    period_s: int = 60

    @property
    def refill_per_s(self) -> float:
        return self.capacity / self.period_s


def request_limit(principal: Principal, settings: Settings) -> Limit:
    # Keys carry the user id in braces: a Redis Cluster hash tag keeps a user's keys on one node.
    if principal.api_key_id is not None:
        return Limit(f"rl:key:{{{principal.user_id}}}:{principal.api_key_id}", settings.rate_limit_api_key)
    capacity = settings.rate_limit_premium if principal.tier == "premium" else settings.rate_limit_standard
    return Limit(f"rl:user:{{{principal.user_id}}}", capacity)


def user_generation_key(user_id: object) -> str:
    """Bumped whenever who a user is changes (deleted, role or tier changed): cached principals
    of that user in every API replica are stale from then on. Same hash tag as the user's buckets."""
    return f"user-gen:{{{user_id}}}"


def login_ip_limit(ip: str, settings: Settings) -> Limit:
    return Limit(f"rl:login-ip:{{{ip}}}", settings.login_ip_per_minute)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch_s: int
    retry_after_s: int
    # The value of a key read in the same round trip (a user's generation), when one was asked for.
    read_value: str | None = None

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch_s),
        }
