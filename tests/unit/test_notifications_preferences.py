"""Notification preferences: what is on by default, what a person may change, what stays on."""

from __future__ import annotations

import pytest

from wealthalloc.notifications import KINDS, Channels, PreferenceError, changed, channels_for, effective


def test_everything_shows_in_the_app_and_fills_alerts_and_security_are_emailed_by_default() -> None:
    defaults = effective({})

    assert list(defaults) == list(KINDS)
    assert all(c.in_app for c in defaults.values())
    assert {k for k, c in defaults.items() if c.email} == {"trade_fill", "price_alert", "security"}


def test_a_change_is_partial_and_only_what_differs_from_the_default_is_stored() -> None:
    stored = changed({}, {"trade_fill": {"email": False}, "cash_movement": {"email": True}})

    assert stored == {"trade_fill": {"email": False}, "cash_movement": {"email": True}}
    assert channels_for("trade_fill", stored) == Channels(in_app=True, email=False)
    assert channels_for("price_alert", stored) == Channels(in_app=True, email=True)


def test_setting_a_kind_back_to_its_default_forgets_the_override() -> None:
    stored = changed({"trade_fill": {"email": False}}, {"trade_fill": {"email": True}})

    assert stored == {}


def test_a_later_change_keeps_the_earlier_ones() -> None:
    first = changed({}, {"recommendation": {"in_app": False}})

    assert changed(first, {"trade_fill": {"email": False}}) == {
        "recommendation": {"in_app": False},
        "trade_fill": {"email": False},
    }


def test_security_email_cannot_be_turned_off() -> None:
    with pytest.raises(PreferenceError) as refused:
        changed({}, {"security": {"email": False}})

    assert refused.value.field == "kinds.security.email"
    assert "cannot be turned off" in refused.value.message


def test_security_email_stays_on_even_when_something_stored_says_otherwise() -> None:
    assert channels_for("security", {"security": {"email": False}}).email


def test_security_in_the_app_may_be_turned_off_while_its_email_goes_on() -> None:
    stored = changed({}, {"security": {"in_app": False}})

    assert channels_for("security", stored) == Channels(in_app=False, email=True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trade_fills": {"email": False}}, "kinds.trade_fills"),
        ({"trade_fill": {"sms": True}}, "kinds.trade_fill.sms"),
        ({"trade_fill": {"email": "no"}}, "kinds.trade_fill.email"),
        ({"trade_fill": True}, "kinds.trade_fill"),
    ],
)
def test_unknown_kinds_channels_and_non_booleans_are_refused(change: dict[str, object], field: str) -> None:
    with pytest.raises(PreferenceError) as refused:
        changed({}, change)

    assert refused.value.field == field


def test_a_refused_change_applies_nothing_of_the_request() -> None:
    before = {"trade_fill": {"email": False}}

    with pytest.raises(PreferenceError):
        changed(before, {"cash_movement": {"email": True}, "security": {"email": False}})

    assert before == {"trade_fill": {"email": False}}
