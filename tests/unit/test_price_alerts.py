"""An alert fires on the first price at or past its level, and cannot be set where it would fire at once."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from wealthalloc.domain.price_alerts import AlertOnWrongSide, check_level, reached


def test_an_above_alert_is_reached_at_or_over_its_level_and_a_below_alert_at_or_under() -> None:
    assert not reached("above", D("100"), D("99.99"))
    assert reached("above", D("100"), D("100")) and reached("above", D("100"), D("130"))
    assert not reached("below", D("100"), D("100.01"))
    assert reached("below", D("100"), D("100")) and reached("below", D("100"), D("70"))


def test_an_alert_the_current_price_has_already_reached_is_refused_with_the_price() -> None:
    check_level("above", D("110"), D("100"))
    check_level("below", D("90"), D("100"))
    with pytest.raises(AlertOnWrongSide, match="under the current price 100"):
        check_level("above", D("100"), D("100"))
    with pytest.raises(AlertOnWrongSide, match="over the current price 100"):
        check_level("below", D("120"), D("100"))
