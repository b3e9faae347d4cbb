"""Tax: realized gains as Form 8949 rows, a stateless gains report, harvesting and its execution.

Every figure comes from the domain engines (wash sales, gains report, harvest
scanner); these routes only read the taxpayer from PostgreSQL, or the caller's
trade history from the body, and shape the answer.

- Realized gains of a portfolio are its stored realized rows, reported for a
  year with the totals of the portfolio and of the taxpayer (all taxable
  accounts: the deduction limit and the carryforward are per return). Spouses
  in a household file one joint return: the taxpayer totals, the carryover
  and ``/me/tax-documents`` cover both spouses' taxable accounts (see
  :mod:`wealthalloc.tax.documents`), while a portfolio's own rows, totals and
  downloads stay its owner's, behind the same ownership check.
- The taxpayer totals start from the capital-loss carryover the user entered
  (``PUT /me/tax-years/{year}``) where the platform has no earlier taxable
  sale to compute it from; ``carryforward_source`` says which entry was used
  and shows an entered figure that was not (see
  :func:`wealthalloc.domain.gains_report.opening_carryforward`). The
  portfolio's own ``totals`` stay those of its sales alone: the carryover is
  the taxpayer's, not an account's.
- The same figures download as documents to file from (see ``docs/tax-forms.md``):
  ``realized-gains?format=csv|pdf`` is the portfolio's Form 8949, ``/1099-b``
  the platform's 1099-B of the portfolio, and ``/me/tax-documents/{year}/...``
  the return's Form 8949 and Schedule D over every taxable portfolio. Each
  sale's box (A-F) follows from its lot's origin
  (:mod:`wealthalloc.domain.tax_forms`).
- ``POST /tax/gains-report`` stores nothing: the history is checked exactly as
  ``wealthalloc tax report`` checks a CSV file (the same parser, fed the rows
  as CSV), so the two agree, and a bad row is a 400 naming its index. Losses
  carried in are ``prior_carryforward: {short, long}``; the former name
  ``carryforward`` is still accepted, both at once are a 400.
- Reading ``/tax-harvesting`` refreshes the user's opportunities (stable ids,
  see :mod:`wealthalloc.tax.harvesting`); executing one goes to the shard that
  owns the user, which sells and buys through its order desk.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from actors.portfolio_shard import PortfolioShard
from serve_apps.api.deps import CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from serve_apps.api.ownership import (
    IdempotencyKey,
    PortfolioReader,
    Symbol,
    mutation,
    owner_checked,
    require_key,
)
from serve_apps.api.resources import Resources
from wealthalloc.domain.gains_report import (
    CapitalLossCarryforward,
    FilingStatus,
    capital_loss_limit,
    first_reportable_year,
    gains_report,
    opening_carryforward,
    year_totals_with_entered,
)
from wealthalloc.domain.lots import LotMethod
from wealthalloc.domain.money import cents
from wealthalloc.domain.tax_forms import broker_statement
from wealthalloc.domain.wash_sale import InvalidHistory
from wealthalloc.storage import tax as tax_store
from wealthalloc.tax import TransactionsCsvError, parse_transactions_csv
from wealthalloc.tax.documents import TaxpayerBooks, load_books, schedule_d_dict, short_id
from wealthalloc.tax.form_csv import broker_statement_csv, form_8949_csv, schedule_d_csv
from wealthalloc.tax.form_pdf import form_8949_pdf
from wealthalloc.tax.harvesting import HarvestPlanner, describe, refresh_user
from wealthalloc.tax.report import report_dict, report_for, totals_dict
from wealthalloc.tax.transactions_csv import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

router = APIRouter(prefix="/api/v1", tags=["tax"])

# One line of CSV per transaction: no control characters (a newline would shift every line number).
Field100 = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=100, pattern=r"^[^\x00-\x1f]*$")
]
MAX_TRANSACTIONS = 100_000

_PLANNERS: dict[tuple[str, Decimal, Decimal], HarvestPlanner] = {}


def planner_of(res: Resources) -> HarvestPlanner:
    """The replica's harvest planner (its similarity engine is computed once a day and kept)."""
    settings = res.settings
    key = (str(settings.prices_dir), settings.harvest_min_loss, settings.harvest_min_loss_pct)
    planner = _PLANNERS.get(key)
    if planner is None:
        planner = _PLANNERS[key] = HarvestPlanner(
            prices=res.prices,
            securities=res.securities,
            min_loss=settings.harvest_min_loss,
            min_loss_pct=settings.harvest_min_loss_pct,
        )
    return planner


# Realized gains ---------------------------------------------------------------------------------


DocumentFormat = Literal["json", "csv", "pdf"]
FileFormat = Literal["csv", "pdf"]
TaxYear = Annotated[int, Path(ge=1900, le=2200, description="The tax year")]
_CSV = {"text/csv": {"schema": {"type": "string"}}}
_PDF = {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}
_DOWNLOADS: dict[int | str, dict[str, Any]] = {200: {"content": {**_CSV, **_PDF}}}


@router.get(
    "/portfolios/{portfolio_id}/realized-gains",
    summary="Form 8949 rows (wash sales as code W) and the year's totals, limit and carryforward;"
    " format=csv or pdf downloads the portfolio's Form 8949",
    responses=_DOWNLOADS,
)
async def realized_gains(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    request: Request,
    res: ResourcesDep,
    year: Annotated[
        int | None, Query(ge=1900, le=2200, description="Tax year; the market's current one")
    ] = None,
    format: Annotated[
        DocumentFormat, Query(description="json (the report), csv or pdf (Form 8949 to file from)")
    ] = "json",
) -> Response:
    year = year or res.clock.today().year
    books = await _books(res, owner)
    if portfolio_id not in books.portfolios:
        raise ApiError(404, "NOT_FOUND", "No such portfolio.")
    if format != "json":
        return await _portfolio_form(books, portfolio_id, year, format)
    filing_status = books.filing_status
    realized, entered = books.realized, books.entered
    mine = books.sales_of(portfolio_id)
    report = gains_report(mine, year=year, filing_status=filing_status)
    everything = year_totals_with_entered(realized, year=year, filing_status=filing_status, entered=entered)
    opening = opening_carryforward(entered, first_sale_year=first_reportable_year(realized), year=year)
    account_type = books.portfolios[portfolio_id]["account_type"]
    data = {
        "portfolio_id": portfolio_id,
        "account_type": account_type,
        # Sales in an IRA or Roth IRA are never reported: no rows, nothing deducted.
        "reportable": account_type == "taxable",
        "year": year,
        "filing_status": filing_status.value,
        "deduction_limit": str(cents(capital_loss_limit(filing_status))),
        "rows": report_dict(report)["rows"],
        "totals": totals_dict(report.totals[0]),
        "taxpayer_totals": totals_dict(everything),
        "carryforward_source": _carryforward_source(opening, entered, year),
    }
    return success(request, data)


async def _books(res: Resources, owner: uuid.UUID) -> TaxpayerBooks:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        books = await load_books(conn, owner)
    if books is None:
        raise ApiError(404, "NOT_FOUND", "No such portfolio.")
    return books


def _attachment(content: str | bytes, filename: str) -> Response:
    """A download: CSV as UTF-8 text, anything else as a PDF."""
    media_type = "text/csv; charset=utf-8" if filename.endswith(".csv") else "application/pdf"
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def _account_label(books: TaxpayerBooks, portfolio_id: uuid.UUID) -> str:
    portfolio = books.portfolios[portfolio_id]
    return f"{portfolio['name']} ({portfolio['account_type']}, {short_id(portfolio_id)})"


async def _portfolio_form(books: TaxpayerBooks, portfolio_id: uuid.UUID, year: int, fmt: str) -> Response:
    """One portfolio's Form 8949 (and, in the PDF, the Schedule D lines of its sales alone)."""
    name = f"form-8949-{year}-{short_id(portfolio_id)}.{fmt}"
    rows = books.rows(year, portfolio_id)
    if fmt == "csv":
        return _attachment(form_8949_csv(rows, year=year), name)
    pdf = await asyncio.to_thread(
        form_8949_pdf,
        rows,
        year=year,
        taxpayer=books.name,
        schedule=books.schedule(year, portfolio_id),
        account=_account_label(books, portfolio_id),
    )
    return _attachment(pdf, name)


@router.get(
    "/portfolios/{portfolio_id}/1099-b",
    summary="The platform's 1099-B for the portfolio's sales of a year (CSV): covered or not, basis reported",
    response_class=Response,
    responses={200: {"content": _CSV}},
)
async def form_1099_b(
    portfolio_id: uuid.UUID,
    owner: PortfolioReader,
    res: ResourcesDep,
    year: Annotated[
        int | None, Query(ge=1900, le=2200, description="Tax year; the market's current one")
    ] = None,
) -> Response:
    year = year or res.clock.today().year
    books = await _books(res, owner)
    if portfolio_id not in books.portfolios:
        raise ApiError(404, "NOT_FOUND", "No such portfolio.")
    statement = broker_statement(books.rows(year, portfolio_id))
    return _attachment(broker_statement_csv(statement), f"1099-b-{year}-{short_id(portfolio_id)}.csv")


@router.get(
    "/me/tax-documents/{year}/form-8949",
    summary="My Form 8949 of a year, every taxable portfolio of my return (a joint return: both spouses');"
    " csv, or pdf with the Schedule D summary",
    response_class=Response,
    responses=_DOWNLOADS,
)
async def my_form_8949(
    year: TaxYear,
    principal: CurrentPrincipal,
    res: ResourcesDep,
    format: Annotated[FileFormat, Query(description="csv or pdf")] = "pdf",
) -> Response:
    books = await _books(res, principal.user_id)
    rows = books.rows(year)
    name = f"form-8949-{year}.{format}"
    if format == "csv":
        return _attachment(form_8949_csv(rows, year=year), name)
    pdf = await asyncio.to_thread(
        form_8949_pdf, rows, year=year, taxpayer=books.name, schedule=books.schedule(year)
    )
    return _attachment(pdf, name)


@router.get(
    "/me/tax-documents/{year}/schedule-d",
    summary="My return's Schedule D lines of a year (a joint return: both spouses'; json, csv,"
    " or pdf with the Form 8949 pages)",
    responses=_DOWNLOADS,
)
async def my_schedule_d(
    year: TaxYear,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    format: Annotated[DocumentFormat, Query(description="json, csv or pdf")] = "json",
) -> Response:
    books = await _books(res, principal.user_id)
    schedule = books.schedule(year)
    if format == "csv":
        return _attachment(schedule_d_csv(schedule), f"schedule-d-{year}.csv")
    if format == "pdf":
        pdf = await asyncio.to_thread(
            form_8949_pdf, books.rows(year), year=year, taxpayer=books.name, schedule=schedule
        )
        return _attachment(pdf, f"schedule-d-{year}.pdf")
    return success(request, schedule_d_dict(schedule, books.filing_status))


def _money(carried: CapitalLossCarryforward) -> dict[str, str]:
    return {"short": str(cents(carried.short)), "long": str(cents(carried.long))}


def _carryforward_source(
    opening: tuple[int, CapitalLossCarryforward] | None,
    entered: dict[int, CapitalLossCarryforward],
    year: int,
) -> dict[str, Any]:
    """Where ``taxpayer_totals.prior_carryforward`` comes from; an entered figure not used is shown."""
    source: dict[str, Any] = {
        "opening_year": opening[0] if opening else None,
        "opening_carryforward": _money(opening[1]) if opening else None,
        "entered_carryforward": _money(entered[year]) if year in entered else None,
        "note": None,
    }
    if year in entered and (opening is None or opening[0] != year):
        source["note"] = (
            f"The carryover entered for {year} is not used: there are taxable sales on the platform "
            f"before {year}, so the carryover into {year} is computed from them."
        )
    return source


# The stateless gains report ---------------------------------------------------------------------


class TransactionIn(BaseModel):
    """One executed trade; numbers are decimal strings, as in the CSV the CLI reads."""

    model_config = ConfigDict(extra="forbid")

    date: Field100 = Field(description="ISO trade date, e.g. 2022-03-15")
    account_id: Field100 = Field(min_length=1)
    account_type: Field100 = Field(description="taxable, ira or roth_ira")
    symbol: Field100
    side: Field100 = Field(description="buy or sell")
    quantity: Field100 = Field(description='Shares as a decimal string, e.g. "10"')
    price: Field100 = Field(description='Price per share as a decimal string, e.g. "123.45"')
    fees: Field100 | None = Field(default=None, description="Commissions, a decimal string")
    currency: Field100 | None = Field(default=None, description="USD only")


class Carryforward(BaseModel):
    model_config = ConfigDict(extra="forbid")

    short: Annotated[str, StringConstraints(max_length=30)] = "0"
    long: Annotated[str, StringConstraints(max_length=30)] = "0"


class GainsReportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: list[TransactionIn] = Field(min_length=1, max_length=MAX_TRANSACTIONS)
    lot_method: Literal["fifo", "hifo"] = "fifo"
    year: int | None = Field(default=None, ge=1900, le=2200)
    filing_status: Literal["single", "married_joint", "married_separate", "head_of_household"] = "single"
    prior_carryforward: Carryforward | None = Field(
        default=None, description="Capital losses carried into the history's first year (positive)"
    )
    carryforward: Carryforward | None = Field(
        default=None, description="The former name of prior_carryforward, still accepted (not both)"
    )
    sort: bool = Field(default=False, description="Sort by date instead of refusing a history out of order")


_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)


def _as_csv(transactions: list[TransactionIn]) -> str:
    """The transactions as the CSV file the CLI would read: line ``index + 2`` is transaction ``index``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for tx in transactions:
        writer.writerow([getattr(tx, column) or "" for column in _COLUMNS])
    return out.getvalue()


def _invalid(problems: list[dict[str, Any]]) -> ApiError:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(
        400,
        "INVALID_TRANSACTIONS",
        f"transactions[{first['index']}]: {first['message']}{more}",
        problems,
    )


@router.post(
    "/tax/gains-report", summary="Form 8949 rows and totals for a trade history you send (stores nothing)"
)
async def gains_report_route(
    body: GainsReportBody, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    if body.prior_carryforward is not None and body.carryforward is not None:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            "Send prior_carryforward or its former name carryforward, not both.",
            [{"field": "body.carryforward", "message": "an alias of prior_carryforward; send one"}],
        )
    given = body.prior_carryforward or body.carryforward
    name = "prior_carryforward" if body.prior_carryforward is not None else "carryforward"
    try:
        carried = CapitalLossCarryforward(
            short=Decimal(given.short) if given else Decimal(0),
            long=Decimal(given.long) if given else Decimal(0),
        )
    except (InvalidOperation, ValueError) as exc:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"{name}: {exc}",
            [{"field": f"body.{name}", "message": str(exc)}],
        ) from exc
    known = set(res.prices.symbols()) or None

    def compute() -> dict[str, Any]:
        try:
            history = parse_transactions_csv(
                _as_csv(body.transactions), today=date.today(), known_symbols=known, sort=body.sort
            )
            _, report = report_for(
                history,
                lot_method=LotMethod(body.lot_method),
                year=body.year,
                filing_status=FilingStatus(body.filing_status),
                prior_carryforward=carried,
            )
        except TransactionsCsvError as exc:
            raise _invalid(
                [{"index": problem.line - 2, "message": problem.message} for problem in exc.problems]
            ) from exc
        except InvalidHistory as exc:
            raise _invalid([{"index": exc.index, "message": str(exc)}]) from exc
        return report_dict(report)

    return success(request, await asyncio.to_thread(compute))


# Harvesting -------------------------------------------------------------------------------------


def _shown(row: dict[str, Any], today: date) -> dict[str, Any]:
    out = describe(row, today)
    out["links"] = {"self": f"/api/v1/tax-harvesting/{row['id']}"}
    if row["status"] == "identified":
        out["links"]["execute"] = f"/api/v1/tax-harvesting/{row['id']}/execute"
    return out


@router.get(
    "/tax-harvesting",
    summary="Harvesting opportunities (lots, loss, term, saving, replacements, blockers) and harvests made",
)
async def tax_harvesting(
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    portfolio_id: uuid.UUID | None = None,
) -> JSONResponse:
    owner = principal.user_id
    if portfolio_id is not None:
        owner = await owner_checked(res, principal, portfolio_id, write=False)
    assert res.pool is not None
    today = res.clock.today()
    planner = planner_of(res)
    refreshed = await refresh_user(res.pool, planner, owner, today)
    if refreshed is None:
        raise ApiError(404, "NOT_FOUND", "No such user.")
    async with res.pool.connection() as conn:
        executed = await tax_store.harvests_of(conn, owner, statuses=("executed",), portfolio_id=portfolio_id)
    opportunities = [
        _shown(row, today)
        for row in refreshed.opportunities
        if portfolio_id is None or row["portfolio_id"] == portfolio_id
    ]
    opportunities.sort(key=lambda o: (-Decimal(o["estimated_tax_savings"]), -Decimal(o["loss_amount"])))
    return success(
        request,
        {
            "as_of": today,
            "thresholds": {
                "min_loss": res.settings.harvest_min_loss,
                "min_loss_pct": res.settings.harvest_min_loss_pct,
            },
            "opportunities": opportunities,
            "harvests": [_shown(row, today) for row in executed],
        },
    )


async def _harvest_of(
    res: Resources, principal: Any, harvest_id: uuid.UUID, *, write: bool
) -> dict[str, Any]:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        row = await tax_store.harvest(conn, harvest_id)
    if row is None:
        raise ApiError(404, "NOT_FOUND", "No such harvest opportunity.")
    await require_access(res, principal, row["user_id"], write=write, what="harvest opportunity")
    return row


@router.get(
    "/tax-harvesting/{harvest_id}", summary="One opportunity or harvest; a harvest offers switching back"
)
async def read_harvest(
    harvest_id: uuid.UUID, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    row = await _harvest_of(res, principal, harvest_id, write=False)
    return success(request, _shown(row, res.clock.today()))


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replacement_symbol: Symbol = Field(description="What to buy instead: never substantially identical")


@router.post(
    "/tax-harvesting/{harvest_id}/execute",
    status_code=201,
    summary="Sell the lots and buy the replacement (needs an Idempotency-Key); opens the wash-sale window",
)
async def execute_harvest(
    harvest_id: uuid.UUID,
    body: ExecuteBody,
    principal: CurrentPrincipal,
    request: Request,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    row = await _harvest_of(res, principal, harvest_id, write=True)
    require_key(idempotency_key)
    owner: uuid.UUID = row["user_id"]
    m = mutation(request, principal, owner, idempotency_key, body.model_dump(mode="json"))
    outcome = await res.shards.outcome(
        owner, PortfolioShard.execute_harvest, m, harvest_id, body.replacement_symbol
    )
    data = outcome.unwrap()
    return success(
        request,
        data,
        status_code=outcome.status,
        links={"harvest": f"/api/v1/tax-harvesting/{harvest_id}"},
    )
