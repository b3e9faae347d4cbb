"""``/me/household``: link my tax books with my spouse's for a joint return, or unlink them.

Only the signed-in person (``PersonPrincipal``: an API key gets 403) sees or changes their own
household; inviting and accepting also need a recent sign-in. The rules and their transactions
are :mod:`wealthalloc.accounts.households`; this module only speaks HTTP.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from serve_apps.api.deps import ClientIp, PersonPrincipal, ResourcesDep
from serve_apps.api.envelope import success
from wealthalloc.accounts.households import Households

router = APIRouter(prefix="/api/v1/me/household", tags=["me"])

Email = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
]


class InvitationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


def _households(res: ResourcesDep) -> Households:
    assert res.pool is not None
    return Households(res.pool, fresh_login=timedelta(minutes=res.settings.fresh_login_minutes))


@router.get("", summary="My joint-filing household and pending invitations")
async def show_household(principal: PersonPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    return success(request, await _households(res).show(principal))


@router.post(
    "/invitations",
    status_code=201,
    summary="Invite my spouse (by email) to file jointly: wash sales then match across both (audited)",
)
async def invite(
    body: InvitationBody, principal: PersonPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    # The same answer whether or not the address has an account.
    data = await _households(res).invite(principal, body.email, ip=ip)
    return success(request, data, status_code=201)


@router.post("/invitations/{invitation_id}/accept", summary="Accept an invitation to a household (audited)")
async def accept(
    invitation_id: uuid.UUID, principal: PersonPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    return success(request, await _households(res).accept(principal, invitation_id, ip=ip))


@router.delete(
    "/invitations/{invitation_id}",
    status_code=204,
    summary="Withdraw (mine) or decline (to me) an invitation",
)
async def close_invitation(
    invitation_id: uuid.UUID, principal: PersonPrincipal, res: ResourcesDep, ip: ClientIp
) -> Response:
    await _households(res).close(principal, invitation_id, ip=ip)
    return Response(status_code=204)


@router.delete("", status_code=204, summary="Leave my household: it ends for both members (audited)")
async def leave(principal: PersonPrincipal, res: ResourcesDep, ip: ClientIp) -> Response:
    await _households(res).leave(principal, ip=ip)
    return Response(status_code=204)
