"""A gains report from a trade history, as data (JSON-ready) and as a text table.

The command line and the API return the same rows and totals; the shape is
defined once here. Amounts are strings so that no client reads them as
floats.
"""

from __future__ import annotations

import gc
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from wealthalloc.domain.gains_report import (
    CapitalLossCarryforward,
    FilingStatus,
    Form8949Row,
    GainsReport,
    YearTotals,
    gains_report,
)
from wealthalloc.domain.lots import LotMethod
from wealthalloc.domain.money import cents
from wealthalloc.domain.wash_sale import IdentityGroups, Realization, Transaction, realize


def report_for(
    transactions: Sequence[Transaction],
    *,
    lot_method: LotMethod = LotMethod.FIFO,
    year: int | None = None,
    filing_status: FilingStatus = FilingStatus.SINGLE,
    prior_carryforward: CapitalLossCarryforward | None = None,
    groups: IdentityGroups | None = None,
) -> tuple[Realization, GainsReport]:
    """Replay ``transactions`` and report the year (every year when ``year`` is ``None``).

    Parameters
    ----------
    transactions : sequence of Transaction
        Checked, in date order.
    lot_method : LotMethod
        FIFO or HIFO.
    year : int, optional
        The tax year to show.
    filing_status : FilingStatus
        Decides the deduction limit.
    prior_carryforward : CapitalLossCarryforward, optional
        Losses carried into the first year of the history.
    groups : IdentityGroups, optional
        Substantially identical securities.

    Returns
    -------
    tuple of (Realization, GainsReport)
        The replay (open lots, wash sales) and the report.
    """
    with gc_paused():
        realization = realize(transactions, lot_method=lot_method, groups=groups, new_lot_id=report_lot_ids())
        report = gains_report(
            realization.realized,
            year=year,
            filing_status=filing_status,
            prior_carryforward=prior_carryforward,
        )
    return realization, report


def report_lot_ids() -> Callable[[], uuid.UUID]:
    """Ids for the lots a stateless report opens: unique within the report, and never stored.

    One random version-4 UUID per report, its last 48 bits (the node field)
    replaced by a counter, so every id keeps the version and variant of a
    random UUID. A fresh ``uuid4`` per lot reads the system's random source
    each time: about a tenth of a 100,000-trade report.
    """
    base = uuid.uuid4().int & ~((1 << 48) - 1)
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=base | next(counter))


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block without the cyclic garbage collector, and restore it after.

    For the batch reports of whole trade histories (the stateless API report, the
    command line), not for the domain core, whose functions touch no process
    state: the order path's small replays gain nothing from it. A replay
    builds a few objects per transaction and keeps nearly all of them
    (lots, rows, wash sales) to the end, none in a reference cycle. The
    collector, triggered by every 700 allocations, would traverse them again
    and again: about half of the time of a 100,000-trade report. Reference
    counting still frees everything as usual. The pause is process-wide, so
    overlapping pauses (threads of one API process) are counted and the
    collector comes back, if it was on, when the last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0:
                _promote_survivors()
                if _gc_was_enabled:
                    gc.enable()


def _promote_survivors() -> None:
    """Move every tracked object into the oldest generation without traversing it.

    Objects allocated during a pause all sit in the youngest generation, so the
    first collection after it would walk the whole report once more (a fifth of
    a 100,000-trade report's time) only to promote what is still alive.
    ``freeze`` then ``unfreeze`` promotes them in constant time; nothing is
    exempted from later collections, and what the caller drops is freed by
    reference counting as usual.
    """
    gc.freeze()
    gc.unfreeze()


def _amount(value: Decimal) -> str:
    return str(cents(value))


def row_dict(row: Form8949Row) -> dict[str, Any]:
    """One Form 8949 row, amounts as strings with cents."""
    return {
        "symbol": row.symbol,
        "shares": format(row.shares, "f"),
        "acquired": row.acquired.isoformat(),
        "sold": row.sold.isoformat(),
        "proceeds": _amount(row.proceeds),
        "cost_basis": _amount(row.cost_basis),
        "adjustment_code": row.adjustment_code,
        "adjustment": _amount(row.adjustment),
        "gain_loss": _amount(row.gain_loss),
        "term": row.term.value,
        "account_id": row.account_id,
    }


def totals_dict(totals: YearTotals) -> dict[str, Any]:
    """One year's totals, amounts as strings with cents."""
    return {
        "year": totals.year,
        "filing_status": totals.filing_status.value,
        "rows": totals.rows,
        "proceeds": _amount(totals.proceeds),
        "cost_basis": _amount(totals.cost_basis),
        "short": _amount(totals.short),
        "long": _amount(totals.long),
        "prior_carryforward": {
            "short": _amount(totals.prior_carryforward.short),
            "long": _amount(totals.prior_carryforward.long),
        },
        "net_short": _amount(totals.net_short),
        "net_long": _amount(totals.net_long),
        "net": _amount(totals.net),
        "disallowed": _amount(totals.disallowed),
        "permanently_disallowed": _amount(totals.permanently_disallowed),
        "deductible": _amount(totals.deductible),
        "carryforward": {
            "short": _amount(totals.carryforward.short),
            "long": _amount(totals.carryforward.long),
        },
    }


def report_dict(report: GainsReport) -> dict[str, Any]:
    """The report as JSON-ready data: ``{"rows": [...], "totals": [...]}``."""
    return {
        "rows": [row_dict(row) for row in report.rows],
        "totals": [totals_dict(totals) for totals in report.totals],
    }


_ROW_COLUMNS = (
    ("symbol", "<"),
    ("shares", ">"),
    ("acquired", "<"),
    ("sold", "<"),
    ("proceeds", ">"),
    ("cost_basis", ">"),
    ("code", "<"),
    ("adjustment", ">"),
    ("gain_loss", ">"),
    ("term", "<"),
    ("account_id", "<"),
)


def report_table(report: GainsReport) -> str:
    """The report as aligned text: the rows, then one block of totals per year."""
    lines: list[str] = []
    cells = []
    for row in report.rows:
        data = row_dict(row)
        data["code"] = data.pop("adjustment_code") or ""
        cells.append([str(data[name]) for name, _ in _ROW_COLUMNS])
    if cells:
        headers = [name for name, _ in _ROW_COLUMNS]
        widths = [max(len(headers[i]), *(len(row[i]) for row in cells)) for i in range(len(headers))]

        def fmt(values: list[str]) -> str:
            return "  ".join(
                f"{value:{align}{width}}"
                for value, (_, align), width in zip(values, _ROW_COLUMNS, widths, strict=True)
            ).rstrip()

        lines.append(fmt(headers))
        lines.append(fmt(["-" * width for width in widths]))
        lines.extend(fmt(row) for row in cells)
    else:
        lines.append("no reportable sales")
    for totals in report.totals:
        data = totals_dict(totals)
        lines.append("")
        lines.append(f"{totals.year} ({totals.filing_status.value}, {totals.rows} rows)")
        pairs = [
            ("short-term", data["short"]),
            ("long-term", data["long"]),
            (
                "carried in (short, long)",
                f"{data['prior_carryforward']['short']}, {data['prior_carryforward']['long']}",
            ),
            ("net short-term", data["net_short"]),
            ("net long-term", data["net_long"]),
            ("net", data["net"]),
            ("wash sales disallowed", data["disallowed"]),
            ("  of which permanently (IRA)", data["permanently_disallowed"]),
            ("deductible against income", data["deductible"]),
            (
                "carryforward (short, long)",
                f"{data['carryforward']['short']}, {data['carryforward']['long']}",
            ),
        ]
        width = max(len(label) for label, _ in pairs)
        lines.extend(f"  {label:<{width}}  {value}" for label, value in pairs)
    return "\n".join(lines)
