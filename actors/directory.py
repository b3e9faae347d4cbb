"""Running actors found by their names: how one actor reaches another without importing it.

The shard hands orders to the broker gateway, and the gateway sends fills back
to the shards: at run time they call each other. Their modules must not import
each other as well (a loop a reader cannot start from, and one Python only
survives by importing late), so the shard finds the gateway, and its peer
shards, here by name. Creating an actor stays with its own module and with
whoever starts the platform (the API replica's resources, ``wealthalloc serve``),
which also recreate the gateway when a health probe finds it missing.
"""

from __future__ import annotations

from typing import Any

import ray

GATEWAY_NAME = "broker-gateway"


class NotRunning(RuntimeError):
    """The named actor is not running now; what needed it waits for the platform to start it."""


def running(name: str, namespace: str) -> Any:
    """The handle of the running actor ``name``; :class:`NotRunning` when there is none."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError as exc:  # Ray's answer for a name nobody holds
        raise NotRunning(f"no actor {name!r} is running in {namespace!r}") from exc
