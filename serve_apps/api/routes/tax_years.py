"""The taxpayer's tax years: the capital-loss carryover brought into a year from before the platform.

``PUT /me/tax-years/{year}`` sets what the prior year's Capital Loss Carryover
Worksheet carried into ``year``, short and long term apart; the realized-gains
totals and harvesting's estimated savings start their Schedule D chain from it
(the rule is :func:`wealthalloc.domain.gains_report.opening_carryforward`).

These are the person's own figures from their own returns, so only the
signed-in person sets, lists or deletes them (``PersonPrincipal``: an API key
gets 403), always their own: every query is keyed by the caller's id, so there
is no way to name someone else's years, for an advisor or an admin either.
Each change is audited in its own transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serve_apps.api.deps import ClientIp, PersonPrincipal, ResourcesDep
from serve_apps.api.envelope import ApiError, success
from wealthalloc.domain.money import cents
from wealthalloc.storage import tax_years as store
from wealthalloc.storage.audit import append_audit, new_entry
from wealthalloc.storage.books import Row

router = APIRouter(prefix="/api/v1/me", tags=["me"])

FIRST_YEAR = 2000

# A loss carried over, as a positive amount with at most two decimal places (what a return shows).
Carryover = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\d{1,15}(\.\d{1,2})?$", max_length=18)
]
Year = Annotated[int, Path(ge=FIRST_YEAR, le=2200, description="The tax year the losses are carried into")]


class TaxYearBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    short_term_carryforward: Carryover = Field(
        default="0", description='Short-term capital loss carried into the year, e.g. "1234.56"'
    )
    long_term_carryforward: Carryover = Field(
        default="0", description='Long-term capital loss carried into the year, e.g. "0"'
    )


def _checked(year: int) -> int:
    """Years from 2000 to next year: a carryover into a later year cannot have been computed yet."""
    last = datetime.now(UTC).year + 1
    if not FIRST_YEAR <= year <= last:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"year must be between {FIRST_YEAR} and {last}",
            [{"field": "path.year", "message": f"between {FIRST_YEAR} and {last}"}],
        )
    return year


def _shown(row: Row) -> dict[str, Any]:
    return {
        "year": row["year"],
        "short_term_carryforward": str(cents(row["short_term_carryforward"])),
        "long_term_carryforward": str(cents(row["long_term_carryforward"])),
        "updated_at": row["updated_at"],
        "links": {"self": f"/api/v1/me/tax-years/{row['year']}"},
    }


@router.get("/tax-years", summary="My capital-loss carryovers by tax year")
async def list_tax_years(principal: PersonPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    assert res.pool is not None
    async with res.pool.connection() as conn:
        rows = await store.tax_years(conn, principal.user_id)
    return success(request, [_shown(row) for row in rows])


@router.put("/tax-years/{year}", summary="Set the capital-loss carryover into a tax year (audited)")
async def put_tax_year(
    year: Year,
    body: TaxYearBody,
    principal: PersonPrincipal,
    request: Request,
    res: ResourcesDep,
    ip: ClientIp,
) -> JSONResponse:
    _checked(year)
    short, long = Decimal(body.short_term_carryforward), Decimal(body.long_term_carryforward)
    assert res.pool is not None
    async with res.pool.connection() as conn, conn.transaction():
        before = await store.tax_year(conn, principal.user_id, year)
        row = await store.put_tax_year(conn, principal.user_id, year, short=short, long=long)
        details: dict[str, Any] = {
            "year": year,
            "short_term_carryforward": str(cents(short)),
            "long_term_carryforward": str(cents(long)),
        }
        if before is not None:
            details["was"] = {
                "short_term_carryforward": str(cents(before["short_term_carryforward"])),
                "long_term_carryforward": str(cents(before["long_term_carryforward"])),
            }
        await append_audit(
            conn,
            new_entry(
                "tax_year.set",
                actor_id=principal.user_id,
                subject=f"user:{principal.user_id}",
                details=details,
                ip=ip,
            ),
        )
    return success(request, _shown(row))


@router.delete("/tax-years/{year}", status_code=204, summary="Forget the carryover into a tax year (audited)")
async def delete_tax_year(
    year: Year, principal: PersonPrincipal, res: ResourcesDep, ip: ClientIp
) -> Response:
    assert res.pool is not None
    async with res.pool.connection() as conn, conn.transaction():
        row = await store.delete_tax_year(conn, principal.user_id, year)
        if row is None:
            raise ApiError(404, "NOT_FOUND", f"No carryover entered for {year}.")
        await append_audit(
            conn,
            new_entry(
                "tax_year.delete",
                actor_id=principal.user_id,
                subject=f"user:{principal.user_id}",
                details={"year": year},
                ip=ip,
            ),
        )
    return Response(status_code=204)
