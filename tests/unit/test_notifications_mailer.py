"""How the notification mailer reads an SMTP failure: try again later, or give up."""

from __future__ import annotations

import smtplib

import pytest

from wealthalloc.events.notifications import outcome_of, retry_delay


def test_the_retry_delay_doubles_from_the_first_and_stops_at_the_cap() -> None:
    delays = [retry_delay(attempt, initial_s=30, max_s=300) for attempt in range(1, 6)]

    assert delays == [30, 60, 120, 240, 300]


@pytest.mark.parametrize(
    ("failure", "retryable"),
    [
        (smtplib.SMTPRecipientsRefused({"a@example.com": (451, b"try later")}), True),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")}), False),
        (smtplib.SMTPDataError(452, b"mailbox full"), True),
        (smtplib.SMTPDataError(554, b"rejected as spam"), False),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (ConnectionRefusedError(111, "refused"), True),
    ],
)
def test_a_4xx_or_a_lost_connection_is_tried_again_and_a_5xx_is_final(
    failure: BaseException, retryable: bool
) -> None:
    outcome = outcome_of(failure)

    assert not outcome.sent
    assert outcome.retryable is retryable
    assert outcome.error.startswith(type(failure).__name__)
