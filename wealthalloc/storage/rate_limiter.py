"""Token buckets and failed-login counters in Redis, each updated by one atomic Lua script.

The bucket lives in a hash (``tokens``, ``ts``) and is refilled lazily from
Redis's own clock, so replicas with skewed clocks share one budget and a burst
of concurrent requests cannot overdraw it: the script runs as a single
command. Keys expire once a bucket would be full again, so idle callers cost
nothing.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from wealthalloc.security.rate_limits import Decision, Limit

# KEYS[1] bucket, KEYS[2] (optional) a key to read in the same round trip; ARGV: capacity, refill per
# second, cost. Returns {allowed, tokens_left*1000, now_ms, value of KEYS[2] or false}.
_TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
local generation = false
if #KEYS > 1 then generation = redis.call('GET', KEYS[2]) end
return {allowed, math.floor(tokens * 1000), now, generation}
"""

# KEYS[1] counter; ARGV: window ms. One more attempt, counted atomically; the window starts with the first.
_COUNT_ATTEMPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


# A generation outlives every replica's cache of it many times over; when it expires, "0" is read,
# which differs from every value bump() writes, so replicas re-check (never wrongly trust) the user.
GENERATION_TTL_S = 7 * 24 * 3600


class RateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._bucket = client.register_script(_TOKEN_BUCKET)
        self._attempt = client.register_script(_COUNT_ATTEMPT)

    async def take(self, limit: Limit, cost: int = 1, *, also_read: str | None = None) -> Decision:
        """Spend ``cost`` tokens; ``also_read`` is a key (same hash tag) whose value comes back too."""
        keys = [limit.key] if also_read is None else [limit.key, also_read]
        allowed, millitokens, now_ms, value = await self._bucket(
            keys=keys, args=[limit.capacity, limit.refill_per_s, cost]
        )
        tokens = int(millitokens) / 1000
        decision = _decision(limit, bool(allowed), tokens, int(now_ms) / 1000, cost)
        if also_read is None:
            return decision
        return replace(decision, read_value=_text_or_zero(value))

    async def count_attempt(self, key: str, window_s: int) -> tuple[int, int]:
        """One more attempt on ``key``: (attempts in the window, seconds the window has left)."""
        count, ttl_ms = await self._attempt(keys=[key], args=[window_s * 1000])
        return int(count), max(1, math.ceil(int(ttl_ms) / 1000))

    async def bump(self, key: str) -> None:
        """Give ``key`` a value it never had: a counter could come back to a value a replica cached
        before Redis lost its data, and a match would wrongly mean "nothing changed"."""
        await self._client.set(key, secrets.token_hex(8), ex=GENERATION_TTL_S)

    async def read(self, key: str) -> str:
        """The value of ``key`` as ``take(also_read=...)`` reports it ("0" when there is none)."""
        value = await self._client.get(key)
        return _text_or_zero(value)

    async def reset(self, key: str) -> None:
        await self._client.delete(key)

    async def expire_in(self, key: str, seconds: float) -> None:
        await self._client.pexpire(key, max(1, int(seconds * 1000)))


def _text_or_zero(value: object) -> str:
    text = value.decode() if isinstance(value, bytes) else (None if value in (None, 0, False) else str(value))
    return text or "0"


def _decision(limit: Limit, allowed: bool, tokens: float, now_s: float, cost: int) -> Decision:
    full_in = (limit.capacity - tokens) / limit.refill_per_s
    retry_after = 0 if allowed else math.ceil((cost - tokens) / limit.refill_per_s)
    return Decision(
        allowed=allowed,
        limit=limit.capacity,
        remaining=max(0, math.floor(tokens)),
        reset_epoch_s=math.ceil(now_s + full_in),
        retry_after_s=max(retry_after, 0 if allowed else 1),
    )


@dataclass
class _LocalBucket:
    tokens: float
    ts: float


class LocalRateLimiter:
    """The same buckets in this process's memory, for when Redis cannot be reached.

    Authenticated requests then stay limited per replica (a fleet of N replicas
    lets a caller through up to N times its budget) instead of failing open or
    failing outright; logins never use this: they need the shared counters.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, _LocalBucket] = {}
        self._max_keys = max_keys

    def take(self, limit: Limit, now_s: float, cost: int = 1) -> Decision:
        bucket = self._buckets.get(limit.key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()
            bucket = self._buckets[limit.key] = _LocalBucket(tokens=limit.capacity, ts=now_s)
        bucket.tokens = min(limit.capacity, bucket.tokens + max(0.0, now_s - bucket.ts) * limit.refill_per_s)
        bucket.ts = now_s
        allowed = bucket.tokens >= cost
        if allowed:
            bucket.tokens -= cost
        return _decision(limit, allowed, bucket.tokens, now_s, cost)
