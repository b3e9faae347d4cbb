"""How a restartable actor gets its background loops back after Ray restarts it.

Ray runs only ``__init__`` on a restart; an actor whose work is a loop (the
event bus, the broker gateway's ticks) would sit idle until someone happens to
call it. Queueing a call to itself from ``__init__`` runs ``start`` as the
first task after construction, on the first start and on every restart.
"""

from __future__ import annotations

import ray


def start_when_constructed(method: str = "start") -> None:
    """Queue ``method`` on the current actor; nothing outside an actor (a class used in-process)."""
    if not ray.is_initialized():
        return
    try:
        handle = ray.get_runtime_context().current_actor
    except RuntimeError:
        return  # not inside an actor
    # Queued while the actor is being constructed, the call can reach Ray before it marks a restarted
    # actor alive, and fail as "actor restarting"; retried, it runs once the actor is up (starting is
    # idempotent).
    getattr(handle, method).options(max_task_retries=-1).remote()


# Ray gives the head node this resource. The singletons that every replica talks to (the broker
# gateway, the event bus) need it, so losing a worker node never takes them with it; losing the head
# loses the cluster's GCS anyway.
ON_THE_HEAD_NODE = {"node:__internal_head__": 0.001}
