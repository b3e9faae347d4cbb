"""The chaos verdict's rules: an acknowledged write is found once as answered, or it is lost or doubled."""

from __future__ import annotations

from wealthalloc.chaos.run import ChaosReport, FaultOutcome
from wealthalloc.chaos.verdict import Stored, judge, percentile, summary_line
from wealthalloc.chaos.workload import Ack

USER, PORTFOLIO = "u-1", "p-1"


def ack(kind: str, key: str, ref: str = "") -> Ack:
    return Ack(kind, USER, PORTFOLIO, key, ref, started=0.0, answered=1.0, attempts=1)


def stored(**parts: object) -> Stored:
    defaults: dict[str, object] = {
        "cash": {},
        "orders": {},
        "statuses": {},
        "sessions": frozenset(),
        "overfilled": (),
    }
    return Stored(**{**defaults, **parts})  # type: ignore[arg-type]


def test_writes_stored_once_as_answered_are_neither_lost_nor_doubled() -> None:
    acks = [
        ack("deposit", "k1"),
        ack("withdrawal", "k2"),
        ack("order", "k3", "o-3"),
        ack("cancel", "k4", "o-3"),
        ack("sign_in", "s-1"),
    ]
    found = stored(
        cash={(PORTFOLIO, "k1"): 1, (PORTFOLIO, "k2"): 1},
        orders={(USER, "k3"): ("o-3",)},
        statuses={"o-3": "cancelled"},
        sessions=frozenset({"s-1"}),
    )
    verdict = judge(acks, found)
    assert verdict.lost == () and verdict.doubled == ()


def test_a_deposit_missing_from_postgres_is_lost_and_one_stored_twice_is_doubled() -> None:
    verdict = judge([ack("deposit", "gone"), ack("deposit", "twice")], stored(cash={(PORTFOLIO, "twice"): 2}))
    assert verdict.lost == ("deposit gone",)
    assert verdict.doubled == ("deposit twice stored 2 times",)


def test_a_deposit_under_another_portfolio_does_not_count_for_this_one() -> None:
    verdict = judge([ack("deposit", "k1")], stored(cash={("p-other", "k1"): 1}))
    assert verdict.lost == ("deposit k1",)


def test_an_order_stored_under_another_id_than_answered_is_lost() -> None:
    verdict = judge([ack("order", "k1", "o-answered")], stored(orders={(USER, "k1"): ("o-stored",)}))
    assert verdict.lost == ("order k1: answered as order o-answered, stored as o-stored",)


def test_an_acknowledged_cancel_of_an_order_left_open_is_lost() -> None:
    verdict = judge([ack("cancel", "k1", "o-1")], stored(statuses={"o-1": "submitted"}))
    assert verdict.lost == ("cancel of order o-1: the order is submitted",)


def test_an_order_filled_beyond_its_quantity_is_doubled_and_a_lost_sign_in_is_lost() -> None:
    verdict = judge([ack("sign_in", "s-9")], stored(overfilled=("o-7",)))
    assert verdict.doubled == ("order o-7 filled beyond its quantity",)
    assert verdict.lost == ("sign_in session s-9",)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    assert percentile([float(n) for n in range(1, 101)], 100) == 100.0


def test_the_last_line_says_operations_losses_doubles_kills_and_recovery() -> None:
    assert (
        summary_line(1234, 0, 0, 6, 9.46)
        == "chaos: 1234 operations, 0 lost, 0 doubled, 6 kills, recovery p99 9.5 s"
    )


def test_a_run_is_ok_only_when_nothing_is_lost_doubled_or_broken_and_counts_only_injected_faults() -> None:
    report = ChaosReport(investors=2, operations=10)
    report.faults = [
        FaultOutcome("worker node", "killed", True, (1.0, 8.0), 3.0),
        FaultOutcome("event bus", "no live actor event-bus", False, (), None),
    ]
    assert report.ok and report.kills == 1 and report.recovery_p99_s == 8.0
    assert report.line() == "chaos: 10 operations, 0 lost, 0 doubled, 1 kills, recovery p99 8.0 s"
    report.events = ("1 event(s) not published",)
    assert not report.ok
    assert report.as_dict()["ok"] is False
