"""Time-based one-time passwords (RFC 6238) with replay protection.

A code is valid for its 30-second step and, for clock drift, the steps either
side. Accepting a code records its step; a later login must present a code
from a *later* step, so a code seen over someone's shoulder (or in a proxy
log) cannot be used a second time inside its window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import pyotp

STEP_SECONDS = 30
DRIFT_STEPS = 1
_CODE = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class MfaSetup:
    secret: str
    otpauth_uri: str


def new_setup(*, email: str, issuer: str) -> MfaSetup:
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=email, issuer_name=issuer)
    return MfaSetup(secret=secret, otpauth_uri=uri)


def code_at(secret: str, when: datetime) -> str:
    """The code an authenticator app shows at ``when`` (used by tests and the demo)."""
    return str(pyotp.TOTP(secret, interval=STEP_SECONDS).at(when))


def accepted_step(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to when it is valid and unused, else None."""
    code = code.strip()
    if not _CODE.match(code):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if pyotp.utils.strings_equal(str(totp.generate_otp(step)), code):
            return step
    return None
