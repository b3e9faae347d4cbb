"""The e-mail of a notification: its subject is the title, it says why it came, and it carries no secrets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from wealthalloc.notifications import compose, scrub

SENDER = "WealthAlloc <notifications@wealthalloc.example>"


def notification(**changes: object) -> dict[str, object]:
    return {
        "id": uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100"),
        "kind": "trade_fill",
        "title": "Bought 10 AAPL at $150.25",
        "body": "10 shares of AAPL bought at $150.25 for $1,502.50.",
        "link": "#/portfolios/p/orders",
        "created_at": datetime(2026, 12, 5, 9, 12, tzinfo=UTC),
        **changes,
    }


def test_the_subject_is_the_title_and_the_body_links_to_the_app() -> None:
    message = compose(notification(), to="alice@example.com", sender=SENDER, base_url="https://app.example/")

    assert message["Subject"] == "Bought 10 AAPL at $150.25"
    assert message["To"] == "alice@example.com"
    assert message["From"] == SENDER
    text = message.get_content()
    assert text.startswith("10 shares of AAPL bought at $150.25 for $1,502.50.")
    assert "https://app.example/#/portfolios/p/orders" in text
    assert "because they are on in Settings" in text


def test_without_a_public_address_no_link_is_written() -> None:
    assert "#/portfolios" not in compose(notification(), to="a@example.com", sender=SENDER).get_content()


def test_the_message_id_is_the_notifications_so_a_copy_can_be_recognised() -> None:
    first = compose(notification(), to="a@example.com", sender=SENDER)
    again = compose(notification(), to="a@example.com", sender=SENDER)

    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] == "<notification-0f0e0d0c-0b0a-0908-0706-050403020100@wealthalloc.example>"
    assert first["Auto-Submitted"] == "auto-generated"


def test_security_mail_says_it_cannot_be_turned_off() -> None:
    text = compose(
        notification(kind="security", title="Your password was changed"), to="a@example.com", sender=SENDER
    ).get_content()

    assert "they stay on" in text


def test_account_numbers_keep_their_last_four_digits_and_secrets_are_removed() -> None:
    text = (
        "acct 1234567890 or 1234-5678-9012 key wak_ab12_Zx9-secret and whsec_abcdef and eyJhbGc.eyJzdWIi.sig"
    )

    scrubbed = scrub(text)

    assert "****7890" in scrubbed and "****9012" in scrubbed
    assert "1234567890" not in scrubbed and "wak_" not in scrubbed and "whsec_" not in scrubbed
    assert "eyJ" not in scrubbed


def test_money_dates_and_short_numbers_are_left_alone() -> None:
    text = "$10,000,000.00 on 2022-12-28, 1,000 shares, order 1234567"

    assert scrub(text) == text


def test_what_a_person_typed_is_scrubbed_in_the_mail() -> None:
    message = compose(
        notification(kind="price_alert", body="Your note: move it to account 9876543210"),
        to="a@example.com",
        sender=SENDER,
    )

    assert "9876543210" not in message.get_content() and "****3210" in message.get_content()
