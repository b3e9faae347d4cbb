"""Notifications: what a person is told about (events they did not cause, or need to know of), in what
words, and whether in the app, by e-mail or both. Pure rules; storage, the consumer and the mailer
live in ``wealthalloc.storage.notifications`` and ``wealthalloc.events.notifications``."""

from wealthalloc.notifications.mail import compose, scrub
from wealthalloc.notifications.preferences import (
    ALWAYS_EMAILED,
    DEFAULTS,
    KINDS,
    Channels,
    PreferenceError,
    changed,
    channels_for,
    effective,
)
from wealthalloc.notifications.wording import NOTIFYING_EVENT_TYPES, Draft, draft_for, money, price, shares

__all__ = [
    "ALWAYS_EMAILED",
    "DEFAULTS",
    "KINDS",
    "NOTIFYING_EVENT_TYPES",
    "Channels",
    "Draft",
    "PreferenceError",
    "changed",
    "channels_for",
    "compose",
    "draft_for",
    "effective",
    "money",
    "price",
    "scrub",
    "shares",
]
