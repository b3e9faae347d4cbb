"""Redis clients with short timeouts.

Redis is a cache, a rate limiter and an event bus here, never the truth: a
call that hangs must fail fast so the caller can fall back (or refuse, where
falling open would be unsafe).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from wealthalloc.config import Settings
from wealthalloc.ops import tracing

SOCKET_TIMEOUT_S = 1.0


def async_redis(settings: Settings, *, socket_timeout: float = SOCKET_TIMEOUT_S) -> aioredis.Redis:
    client_class = TracedRedis if tracing.enabled() else aioredis.Redis
    return client_class.from_url(
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


class TracedRedis(aioredis.Redis):
    """Each command as a client span; used only while tracing runs (pipelines are not traced)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        command = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        attributes = {"db.system": "redis", "db.operation.name": command.upper()}
        with tracing.span(f"redis {command.upper()}", kind=tracing.SpanKind.CLIENT, attributes=attributes):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
