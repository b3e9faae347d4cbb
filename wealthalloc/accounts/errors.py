"""Why an account operation was refused, with the HTTP status the API answers it with."""

from __future__ import annotations

from wealthalloc.errors import ServiceError


class AccountError(ServiceError):
    """A refused sign-in, token or account change."""


def invalid_credentials() -> AccountError:
    # One message for an unknown address and a wrong password, so logins do not reveal who has an account.
    return AccountError(401, "INVALID_CREDENTIALS", "The email or password is not correct.")


def unauthenticated(reason: str) -> AccountError:
    return AccountError(
        401,
        "UNAUTHORIZED",
        "Authentication is required: send a valid bearer token or X-API-Key.",
        {"reason": reason},
        headers={"WWW-Authenticate": "Bearer"},
    )


def limiter_unavailable() -> AccountError:
    return AccountError(
        503,
        "SERVICE_UNAVAILABLE",
        "Sign-in is unavailable right now; please try again shortly.",
        {"reason": "the login rate limiter cannot be reached"},
        headers={"Retry-After": "5"},
    )


def person_required() -> AccountError:
    return AccountError(
        403,
        "FORBIDDEN",
        "This needs a signed-in person (a bearer token from /api/v1/auth/login), not an API key.",
        {"reason": "api_key_not_allowed"},
    )


def reauthentication_required(max_age_s: int) -> AccountError:
    """A step-up request (RFC 9470): the sign-in behind this token is too old for the change asked."""
    minutes = max_age_s // 60
    return AccountError(
        401,
        "REAUTHENTICATION_REQUIRED",
        f"This change needs a sign-in from the last {minutes} minutes: sign in again, then retry.",
        {"max_age_seconds": max_age_s},
        headers={
            "WWW-Authenticate": (
                'Bearer error="insufficient_user_authentication", '
                f'error_description="A more recent sign-in is required", max_age="{max_age_s}"'
            )
        },
    )


def mfa_required() -> AccountError:
    return AccountError(401, "MFA_REQUIRED", "This account uses two-factor authentication: send totp_code.")


def invalid_mfa_code() -> AccountError:
    return AccountError(401, "INVALID_MFA_CODE", "The two-factor code is not valid or was already used.")
