"""The floor under a single order: what POST /api/v1/trades does around the shard's desk, without
the desk.

``bench/orders.py`` measures it beside the orders, so a run says how much of a single order's cost is
the order's own work (the checks, the transaction, the fill) and how much is the path every request
to a shard takes whatever it asks: HTTP through the ingress, the envelope, the bearer token and the
rate limit, the ownership check, the body's validation, the quote a market order is judged by, and
one Ray call to the owning shard carrying the same arguments, which the shard's ``traced`` entry
answers at once (it refuses a method it does not have). Nothing is written.

This module is shipped to the Serve replica by value (``ray.cloudpickle.register_pickle_by_value``):
the replica cannot import ``bench/``.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's parameter types from the
# function itself, and by-value pickling carries the objects, not names to resolve.
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from ray import serve

from serve_apps.api.deps import CurrentPrincipal, ResourcesDep
from serve_apps.api.envelope import success
from serve_apps.api.ownership import IdempotencyKey, mutation, owner_checked, require_key
from serve_apps.api.routes.trades import TradeBody, quote_seen, shard_spec
from wealthalloc.config import Settings

FLOOR_PATH = "/bench/floor/trades"
# A method no shard has: ``PortfolioShard.traced`` answers 404 before doing anything else.
NO_SUCH_METHOD = "floor_of_the_order_path"


def floor_router() -> APIRouter:
    router = APIRouter()

    @router.post(FLOOR_PATH, status_code=201, response_model=None)
    async def floor(
        body: TradeBody,
        principal: CurrentPrincipal,
        request: Request,
        res: ResourcesDep,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        owner = await owner_checked(res, principal, body.portfolio_id, write=True)
        require_key(idempotency_key)
        m = mutation(request, principal, owner, idempotency_key, body.model_dump(mode="json"))
        spec = shard_spec(res, body, await quote_seen(res, body.symbol))
        shard = res.shards.handle(owner)
        outcome = await shard.traced.remote({}, NO_SUCH_METHOD, m, body.portfolio_id, spec)
        if outcome.status != 404:
            raise RuntimeError(f"the shard did work for a method it does not have: {outcome.status}")
        return success(request, {"id": str(uuid.uuid4()), "status": "floor"}, status_code=201)

    return router


@serve.deployment(name="ApiIngress", max_ongoing_requests=200)
@serve.ingress()
class FloorIngress:
    """The platform's API app plus the floor route, deployed in the API's place for that phase."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = Settings(**settings)

    def __serve_build_asgi_app__(self) -> object:
        from serve_apps.api.app import create_app

        return create_app(self._settings, extra_routers=[floor_router()], behind_serve=True)
