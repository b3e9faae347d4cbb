"""Links between advisors and the investors whose portfolios they may read.

A link hands someone else read access to a person's portfolios, so only people (bearer tokens)
see or change links; an API key gets 403.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StringConstraints

from serve_apps.api.deps import ClientIp, PersonPrincipal, ResourcesDep
from serve_apps.api.envelope import success

router = APIRouter(prefix="/api/v1/advisor", tags=["advisors"])

Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]


class LinkBody(BaseModel):
    """An admin names both sides; an investor names the advisor they consent to (client_email is theirs)."""

    model_config = ConfigDict(extra="forbid")

    advisor_email: Email
    client_email: Email | None = None


@router.post(
    "/clients", status_code=201, summary="Link an advisor to an investor (admin, or the investor's consent)"
)
async def link_client(
    body: LinkBody, principal: PersonPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    link = await res.accounts.link_advisor(
        principal, advisor_email=body.advisor_email, client_email=body.client_email, ip=ip
    )
    return success(request, link, status_code=201)


@router.get("/clients", summary="My links: my clients as an advisor, my advisors as an investor")
async def list_links(principal: PersonPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    return success(request, await res.accounts.advisor_links(principal))


@router.delete(
    "/clients/{advisor_id}/{client_id}", status_code=204, summary="End a link (admin, or the investor)"
)
async def unlink_client(
    advisor_id: uuid.UUID, client_id: uuid.UUID, principal: PersonPrincipal, res: ResourcesDep, ip: ClientIp
) -> Response:
    await res.accounts.unlink_advisor(principal, advisor_id=advisor_id, client_id=client_id, ip=ip)
    return Response(status_code=204)
