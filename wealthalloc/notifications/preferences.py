"""Kinds of notification and how a person chooses to hear of each: in the app, by e-mail, or both.

A person's stored preferences are only what they changed from the defaults
(``{"trade_fill": {"email": false}}``), so a default that changes later reaches
everyone who never touched that kind. Everything is shown in the app unless
turned off; e-mail starts on for the kinds a person would not want to miss
(their fills, their alerts, their account's security). Security e-mail cannot
be turned off: it is how a person learns that someone else signed in or
changed how they sign in, and an intruder could otherwise silence it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

TRADE_FILL: Final = "trade_fill"
ORDER_REJECTED: Final = "order_rejected"
PRICE_ALERT: Final = "price_alert"
HARVEST_OPPORTUNITY: Final = "harvest_opportunity"
RECOMMENDATION: Final = "recommendation"
CASH_MOVEMENT: Final = "cash_movement"
SECURITY: Final = "security"

KINDS: tuple[str, ...] = (
    TRADE_FILL,
    ORDER_REJECTED,
    PRICE_ALERT,
    HARVEST_OPPORTUNITY,
    RECOMMENDATION,
    CASH_MOVEMENT,
    SECURITY,
)
CHANNELS: tuple[str, ...] = ("in_app", "email")
EMAILED_BY_DEFAULT = frozenset({TRADE_FILL, PRICE_ALERT, SECURITY})
ALWAYS_EMAILED = frozenset({SECURITY})

SECURITY_EMAIL_MESSAGE = (
    "Security e-mails cannot be turned off: they tell you about new sign-ins and changes to how you"
    " sign in, which someone else in your account would want to hide from you."
)


@dataclass(frozen=True)
class Channels:
    """Where a notification of one kind goes."""

    in_app: bool
    email: bool

    def as_dict(self) -> dict[str, bool]:
        return {"in_app": self.in_app, "email": self.email}


DEFAULTS: Mapping[str, Channels] = {
    kind: Channels(in_app=True, email=kind in EMAILED_BY_DEFAULT) for kind in KINDS
}

Overrides = Mapping[str, Mapping[str, bool]]


class PreferenceError(ValueError):
    """A change of preferences that cannot be made; ``field`` names the part of the request at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def channels_for(kind: str, overrides: Overrides) -> Channels:
    """Where ``kind`` goes for a person with ``overrides``; an unknown kind is shown in the app only."""
    default = DEFAULTS.get(kind, Channels(in_app=True, email=False))
    own = overrides.get(kind) or {}
    in_app = bool(own.get("in_app", default.in_app))
    email = bool(own.get("email", default.email)) or kind in ALWAYS_EMAILED
    return Channels(in_app=in_app, email=email)


def effective(overrides: Overrides) -> dict[str, Channels]:
    """Every kind with where it goes, defaults filled in."""
    return {kind: channels_for(kind, overrides) for kind in KINDS}


def changed(overrides: Overrides, changes: Mapping[str, Any]) -> dict[str, dict[str, bool]]:
    """The stored overrides after ``changes`` (``{kind: {channel: bool}}``, a partial update).

    Refused as a whole (:class:`PreferenceError`) when a kind or channel is unknown, a value is
    not a boolean, or security e-mail would be turned off; nothing is half applied.
    """
    result = {kind: dict(values) for kind, values in overrides.items() if kind in DEFAULTS}
    for kind, values in changes.items():
        if kind not in DEFAULTS:
            raise PreferenceError(
                f"kinds.{kind}", f"Unknown notification kind {kind!r}; the kinds are {', '.join(KINDS)}."
            )
        if not isinstance(values, Mapping):
            raise PreferenceError(f"kinds.{kind}", 'Give an object such as {"email": false}.')
        for channel, value in values.items():
            if channel not in CHANNELS:
                raise PreferenceError(
                    f"kinds.{kind}.{channel}", f"Unknown channel {channel!r}; the channels are in_app, email."
                )
            if not isinstance(value, bool):
                raise PreferenceError(f"kinds.{kind}.{channel}", "Must be true or false.")
            if kind in ALWAYS_EMAILED and channel == "email" and not value:
                raise PreferenceError(f"kinds.{kind}.email", SECURITY_EMAIL_MESSAGE)
            own = result.setdefault(kind, {})
            if value == getattr(DEFAULTS[kind], channel):
                own.pop(channel, None)  # back to the default: keep storing only what differs
            else:
                own[channel] = value
    return {kind: values for kind, values in result.items() if values}
