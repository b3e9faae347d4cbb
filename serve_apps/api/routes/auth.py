"""Sign-up, sign-in, token refresh, sign-out and two-factor set-up."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serve_apps.api.deps import ClientIp, CurrentPrincipal, ResourcesDep
from serve_apps.api.envelope import success

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

Password = Annotated[str, Field(min_length=1, max_length=1024)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320)]
TotpCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{6}$")]
RefreshToken = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterBody(Strict):
    email: Email
    password: Password
    full_name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None
    ) = None
    risk_tolerance: Literal["conservative", "moderate", "aggressive"] = "moderate"


class LoginBody(Strict):
    email: Email
    password: Password
    totp_code: TotpCode | None = None


class RefreshBody(Strict):
    refresh_token: RefreshToken


class MfaCodeBody(Strict):
    code: TotpCode


@router.post("/register", status_code=201, summary="Create an investor account")
async def register(body: RegisterBody, request: Request, res: ResourcesDep, ip: ClientIp) -> JSONResponse:
    user = await res.accounts.register(
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        risk_tolerance=body.risk_tolerance,
        ip=ip,
    )
    return success(request, user, status_code=201, links={"login": "/api/v1/auth/login"})


@router.post("/login", summary="Exchange email and password (and a TOTP code when on) for tokens")
async def login(body: LoginBody, request: Request, res: ResourcesDep, ip: ClientIp) -> JSONResponse:
    pair = await res.accounts.login(email=body.email, password=body.password, totp_code=body.totp_code, ip=ip)
    return success(request, pair.as_response(), headers={"Cache-Control": "no-store"})


@router.post("/refresh", summary="A new token pair for a refresh token; the old one stops working")
async def refresh(body: RefreshBody, request: Request, res: ResourcesDep, ip: ClientIp) -> JSONResponse:
    pair = await res.accounts.refresh(refresh_token=body.refresh_token, ip=ip)
    return success(request, pair.as_response(), headers={"Cache-Control": "no-store"})


@router.post("/logout", status_code=204, summary="End the login the refresh token belongs to")
async def logout(body: RefreshBody, res: ResourcesDep, ip: ClientIp) -> Response:
    await res.accounts.logout(refresh_token=body.refresh_token, ip=ip)
    return Response(status_code=204)


@router.post("/mfa/setup", summary="A new TOTP secret and its otpauth:// URI, not yet enabled")
async def mfa_setup(
    principal: CurrentPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    setup = await res.accounts.mfa_setup(principal, ip=ip)
    return success(
        request,
        {"secret": setup.secret, "otpauth_uri": setup.otpauth_uri},
        headers={"Cache-Control": "no-store"},
        links={"enable": "/api/v1/auth/mfa/enable"},
    )


@router.post("/mfa/enable", status_code=204, summary="Turn TOTP on with a valid code from the authenticator")
async def mfa_enable(
    body: MfaCodeBody, principal: CurrentPrincipal, res: ResourcesDep, ip: ClientIp
) -> Response:
    await res.accounts.mfa_enable(principal, body.code, ip=ip)
    return Response(status_code=204)
