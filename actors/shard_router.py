"""How an API replica reaches the shard that owns a user: slot map, named actor, one call.

Routing is by user, also for the members of a joint-filing household, whose wash sales change
each other's lots: the slot of a user never depends on anything that can change, so every
replica and the broker gateway agree on it without a lookup, and a user never has two writers.
A fill that changes the spouse's lots evicts the spouse's cached book on the spouse's shard
before it is acknowledged (:mod:`wealthalloc.portfolios.household_books`, docs/tax-households.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec

from actors.portfolio_shard import (
    Outcome,
    PortfolioShard,
    RemoteShard,
    shard_homes,
    shard_options,
    traced_call,
)
from wealthalloc.config import Settings
from wealthalloc.domain.sharding import shard_name, shard_of
from wealthalloc.ops import tracing
from wealthalloc.ops.metrics import SHARD_CALLS

P = ParamSpec("P")

#: A method of the shard actor, named by reference (``PortfolioShard.snapshot``) so that a reader and
#: mypy follow a call from a route into the actor, and its arguments are checked against it.
ShardMethod = Callable[Concatenate[PortfolioShard, P], Awaitable[Outcome]]

# Settings a shard must not receive: it signs nothing.
_PRIVATE = {"secret_key", "jwt_previous_keys"}


class ShardRouter:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._overrides = settings.model_dump(mode="json", exclude=_PRIVATE)
        self._handles: dict[int, Any] = {}
        self._homes: list[str] | None = None

    @property
    def overrides(self) -> dict[str, Any]:
        """The settings actors are built with (never the signing keys)."""
        return dict(self._overrides)

    def index_of(self, user_id: uuid.UUID) -> int:
        return shard_of(user_id, slot_count=self._settings.slot_count, shard_count=self._settings.shard_count)

    def handle(self, user_id: uuid.UUID) -> Any:
        return self.handle_for_index(self.index_of(user_id))

    async def outcome(
        self, user_id: uuid.UUID, method: ShardMethod[P], *args: P.args, **kwargs: P.kwargs
    ) -> Outcome:
        """``method`` on the shard that owns ``user_id``: its status and data, or its refusal."""
        name = method.__name__
        with SHARD_CALLS.labels(name).time(), tracing.span(f"shard {name}", kind=tracing.SpanKind.CLIENT):
            result: Outcome = await traced_call(self.handle(user_id), name, *args, **kwargs)
        return result

    async def call(
        self, user_id: uuid.UUID, method: ShardMethod[P], *args: P.args, **kwargs: P.kwargs
    ) -> Any:
        """The call's data, or its refusal raised as a ServiceError."""
        return (await self.outcome(user_id, method, *args, **kwargs)).unwrap()

    def handle_for_index(self, index: int) -> Any:
        if index not in self._handles:
            homes = self._homes if self._homes is not None else shard_homes()
            self._homes = homes
            home = homes[index % len(homes)] if homes else None
            options = shard_options(shard_name(index), self._settings.ray_namespace, home)
            self._handles[index] = RemoteShard.options(**options).remote(index, self._overrides)
        return self._handles[index]
