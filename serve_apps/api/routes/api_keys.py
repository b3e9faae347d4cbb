"""API keys for programs acting for a person: created with scopes, shown once, revocable.

Only the person manages keys (an API key gets 403 here), and creating or
revoking one needs a recent sign-in plus the current TOTP code when MFA is on:
a key outlives the session that made it, so a stolen session must not be able
to mint one.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serve_apps.api.deps import ClientIp, PersonPrincipal, ResourcesDep
from serve_apps.api.envelope import success
from wealthalloc.security.access import Scope

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])

TotpCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{6}$")]


class NewKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    scopes: list[Scope] = Field(default_factory=lambda: [Scope.READ], min_length=1, max_length=len(Scope))
    totp_code: TotpCode | None = None


class RevokeKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    totp_code: TotpCode | None = None


@router.post("", status_code=201, summary="Create a key; the key itself is in this response only")
async def create_key(
    body: NewKeyBody, principal: PersonPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    created = await res.accounts.create_api_key(
        principal, name=body.name, scopes=body.scopes, totp_code=body.totp_code, ip=ip
    )
    return success(
        request,
        {**created.record, "key": created.key},
        status_code=201,
        headers={"Cache-Control": "no-store"},
        links={"revoke": f"/api/v1/api-keys/{created.record['id']}"},
    )


@router.get("", summary="My keys (never the keys themselves)")
async def list_keys(principal: PersonPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    return success(request, await res.accounts.list_api_keys(principal))


@router.delete("/{key_id}", summary="Revoke a key at once (body: totp_code when MFA is on)")
async def revoke_key(
    key_id: uuid.UUID,
    principal: PersonPrincipal,
    request: Request,
    res: ResourcesDep,
    ip: ClientIp,
    body: Annotated[RevokeKeyBody | None, Body()] = None,
) -> JSONResponse:
    totp_code = body.totp_code if body is not None else None
    return success(request, await res.accounts.revoke_api_key(principal, key_id, totp_code=totp_code, ip=ip))
