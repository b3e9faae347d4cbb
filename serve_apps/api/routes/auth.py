"""Sign-up, sign-in, token refresh, sign-out, password change and two-factor set-up.

Everything here is for people: a request carrying an API key is refused (403)
on every route of this router. Changing MFA needs a recent sign-in
(``fresh_login_minutes``) and, to turn it off, the password and a current
code; changing the password needs the current one (and a code when MFA is on).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serve_apps.api.deps import ClientIp, PersonPrincipal, ResourcesDep, refuse_api_keys
from serve_apps.api.envelope import success

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], dependencies=[Depends(refuse_api_keys)])

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


class MfaDisableBody(Strict):
    password: Password
    code: TotpCode


class PasswordChangeBody(Strict):
    current_password: Password
    new_password: Password
    totp_code: TotpCode | None = None


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
    pair = await res.accounts.login(
        email=body.email,
        password=body.password,
        totp_code=body.totp_code,
        ip=ip,
        user_agent=request.headers.get("user-agent"),
    )
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
    principal: PersonPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
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
    body: MfaCodeBody, principal: PersonPrincipal, res: ResourcesDep, ip: ClientIp
) -> Response:
    await res.accounts.mfa_enable(principal, body.code, ip=ip)
    return Response(status_code=204)


@router.post(
    "/mfa/disable",
    status_code=204,
    summary="Turn TOTP off: a recent sign-in, the password and a current code; other sessions end",
)
async def mfa_disable(
    body: MfaDisableBody, principal: PersonPrincipal, res: ResourcesDep, ip: ClientIp
) -> Response:
    await res.accounts.mfa_disable(principal, password=body.password, code=body.code, ip=ip)
    return Response(status_code=204)


@router.post(
    "/password",
    status_code=204,
    summary="Change the password (the current one, and totp_code when MFA is on); other sessions end",
)
async def change_password(
    body: PasswordChangeBody, principal: PersonPrincipal, res: ResourcesDep, ip: ClientIp
) -> Response:
    await res.accounts.change_password(
        principal,
        current_password=body.current_password,
        new_password=body.new_password,
        totp_code=body.totp_code,
        ip=ip,
    )
    return Response(status_code=204)
