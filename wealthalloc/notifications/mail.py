"""The e-mail a notification becomes: plain text, nothing secret, one Message-ID per notification.

The Message-ID is derived from the notification's id, so if a mailer ever
sends the same notification twice (it crashed between the server's answer and
recording it) a receiving system can recognise the copy. Whatever a person
typed that reaches a mail (a note, a key's name) passes through :func:`scrub`
first: long digit runs, such as account numbers, keep their last four digits
only, and anything shaped like one of the platform's secrets is removed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from wealthalloc.notifications.preferences import ALWAYS_EMAILED

# A run of 8+ digits, or groups of 3+ digits joined by spaces or dashes (a card or account number);
# dates (2022-12-28) and amounts with thousands separators do not match.
LONG_DIGITS = re.compile(r"\b\d{3,}(?:[ -]\d{3,})*\b")
MIN_MASKED_DIGITS = 8
SECRET_SHAPES = re.compile(r"\b(?:wak|wart|whsec)_[A-Za-z0-9_\-]+|\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_.\-]+")
KIND_NAMES: Mapping[str, str] = {
    "trade_fill": "trade fill",
    "order_rejected": "rejected order",
    "price_alert": "price alert",
    "harvest_opportunity": "tax-loss harvest",
    "recommendation": "recommendation",
    "cash_movement": "cash movement",
    "security": "security",
}


def scrub(text: str) -> str:
    """``text`` with account-number-like digit runs masked to their last four and secrets removed."""

    def mask(found: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", found.group(0))
        return "****" + digits[-4:] if len(digits) >= MIN_MASKED_DIGITS else found.group(0)

    return SECRET_SHAPES.sub("[removed]", LONG_DIGITS.sub(mask, text))


def message_id(notification_id: uuid.UUID | str, sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >") or "wealthalloc.invalid"
    return f"<notification-{notification_id}@{domain}>"


def compose(notification: Mapping[str, Any], *, to: str, sender: str, base_url: str = "") -> EmailMessage:
    """The message for ``notification`` (a row with id, kind, title, body, link, created_at)."""
    kind = str(notification["kind"])
    lines = [scrub(str(notification["body"]))]
    link = notification.get("link")
    if link and base_url:
        lines += ["", f"{base_url.rstrip('/')}/{str(link).lstrip('/')}"]
    name = KIND_NAMES.get(kind, kind)
    lines += ["", "--"]
    if kind in ALWAYS_EMAILED:
        lines.append(f"You get {name} e-mails so that nobody can act in your account unseen; they stay on.")
    else:
        lines.append(f"You get {name} e-mails because they are on in Settings, Notifications.")
    message = EmailMessage()
    message["Subject"] = scrub(str(notification["title"]))
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = message_id(notification["id"], sender)
    created = notification.get("created_at")
    message["Date"] = formatdate(created.timestamp() if created is not None else None, usegmt=True)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to this
    message.set_content("\n".join(lines) + "\n")
    return message
