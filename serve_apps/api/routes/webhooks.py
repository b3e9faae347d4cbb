"""Webhooks: subscribe a URL to events (its signing secret shown once), read the delivery log,
and receive partners' signed webhooks.

Subscriptions are the person's (an API key gets 403): a webhook sends the account's events to
any URL, which is handing the account's data over.

Outgoing deliveries are made by the event bus, not by these routes; see ``docs/webhooks.md``
for the header format and how a receiver verifies it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serve_apps.api.deps import ClientIp, PersonPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from wealthalloc.brokers import incoming
from wealthalloc.events.signing import SIGNATURE_HEADER
from wealthalloc.events.webhooks import WebhookOptions, WebhookService

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


async def get_webhook_service(res: ResourcesDep) -> WebhookService:
    if res.pool is None:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "The database is not available.")
    return WebhookService(pool=res.pool, options=WebhookOptions.from_settings(res.settings))


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]

EventName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class NewWebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2048)] = Field(
        description="https URL that receives a signed POST per event."
    )
    events: list[EventName] = Field(
        min_length=1,
        max_length=50,
        description="Topics (e.g. trades.executed) and/or event types (e.g. portfolio.cash_moved).",
    )


@router.post(
    "", status_code=201, summary="Subscribe a URL to events; the signing secret is in this response only"
)
async def create_webhook(
    body: NewWebhookBody,
    principal: PersonPrincipal,
    request: Request,
    res: ResourcesDep,
    service: WebhookServiceDep,
    ip: ClientIp,
) -> JSONResponse:
    await require_access(res, principal, principal.user_id, write=True, what="webhook")
    created = await service.create(user_id=principal.user_id, url=body.url, events=body.events, ip=ip)
    webhook_id = created.record["id"]
    return success(
        request,
        {**created.record, "secret": created.secret},
        status_code=201,
        headers={"Cache-Control": "no-store"},
        links={
            "deliveries": f"/api/v1/webhooks/{webhook_id}/deliveries",
            "delete": f"/api/v1/webhooks/{webhook_id}",
        },
    )


@router.get("", summary="My webhooks (never their secrets)")
async def list_webhooks(
    principal: PersonPrincipal, request: Request, res: ResourcesDep, service: WebhookServiceDep
) -> JSONResponse:
    await require_access(res, principal, principal.user_id, write=False, what="webhook")
    return success(request, await service.webhooks_of(user_id=principal.user_id))


@router.delete(
    "/{webhook_id}", status_code=204, summary="Delete a webhook; its pending deliveries are dropped"
)
async def delete_webhook(
    webhook_id: uuid.UUID,
    principal: PersonPrincipal,
    res: ResourcesDep,
    service: WebhookServiceDep,
    ip: ClientIp,
) -> Response:
    await require_access(res, principal, principal.user_id, write=True, what="webhook")
    await service.delete(user_id=principal.user_id, webhook_id=webhook_id, ip=ip)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", summary="A webhook's delivery log, newest first")
async def list_deliveries(
    webhook_id: uuid.UUID,
    principal: PersonPrincipal,
    request: Request,
    res: ResourcesDep,
    service: WebhookServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, description="Deliveries older than this sequence")] = None,
    status: Literal["pending", "delivered", "failed"] | None = None,
) -> JSONResponse:
    await require_access(res, principal, principal.user_id, write=False, what="webhook")
    rows = await service.deliveries(
        user_id=principal.user_id, webhook_id=webhook_id, before_sequence=before, limit=limit, status=status
    )
    links = {}
    if len(rows) == limit:
        query = f"limit={limit}&before={rows[-1]['sequence']}" + (f"&status={status}" if status else "")
        links["next"] = f"/api/v1/webhooks/{webhook_id}/deliveries?{query}"
    return success(request, rows, links=links)


@router.post(
    "/incoming/{source}",
    status_code=202,
    summary="A partner's signed webhook: 401 for a bad or stale signature, 409 for a message seen before",
)
async def receive_incoming(
    source: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")],
    request: Request,
    res: ResourcesDep,
    service: WebhookServiceDep,
) -> JSONResponse:
    body = await request.body()
    accepted = await service.receive(
        source=source, signature=request.headers.get(SIGNATURE_HEADER), body=body
    )
    if source == incoming.SOURCE and (gateway := res.gateway()) is not None:
        gateway.process_incoming.remote()  # now rather than at the next tick, which would also do it
    return success(request, accepted, status_code=202)
