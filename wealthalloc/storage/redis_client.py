"""Redis clients with short timeouts.

Redis is a cache, a rate limiter and an event bus here, never the truth: a
call that hangs must fail fast so the caller can fall back (or refuse, where
falling open would be unsafe).
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from wealthalloc.config import Settings

SOCKET_TIMEOUT_S = 1.0


def async_redis(settings: Settings, *, socket_timeout: float = SOCKET_TIMEOUT_S) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
        decode_responses=False,
    )


def sync_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
    )
