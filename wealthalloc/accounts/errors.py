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
