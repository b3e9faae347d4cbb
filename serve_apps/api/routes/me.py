"""The signed-in person's own profile: risk profile and tax profile."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from serve_apps.api.deps import ClientIp, CurrentPrincipal, PersonPrincipal, ResourcesDep
from serve_apps.api.envelope import ApiError, success
from wealthalloc.accounts.households import files_jointly
from wealthalloc.domain.household import JOINT_FILING_STATUS

router = APIRouter(prefix="/api/v1", tags=["users"])

Rate = Annotated[Decimal, Field(ge=0, le=1, max_digits=6, decimal_places=5)]


class TaxProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filing_status: Literal["single", "married_joint", "married_separate", "head_of_household"] | None = None
    federal_rate: Rate | None = None
    state_rate: Rate | None = None
    short_term_rate: Rate | None = None
    long_term_rate: Rate | None = None


class ProfileChanges(BaseModel):
    """Any subset of the profile; the tax profile may come nested or flat."""

    model_config = ConfigDict(extra="forbid")

    full_name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None
    ) = None
    risk_tolerance: Literal["conservative", "moderate", "aggressive"] | None = None
    investment_experience: Literal["beginner", "intermediate", "advanced"] | None = None
    tax_profile: TaxProfile | None = None
    filing_status: Literal["single", "married_joint", "married_separate", "head_of_household"] | None = None
    federal_rate: Rate | None = None
    state_rate: Rate | None = None
    short_term_rate: Rate | None = None
    long_term_rate: Rate | None = None

    @model_validator(mode="after")
    def _not_both_nested_and_flat(self) -> ProfileChanges:
        if self.tax_profile is not None:
            for name in self.tax_profile.model_fields_set:
                if name in self.model_fields_set:
                    raise ValueError(f"{name} is given both in tax_profile and at the top level")
        return self

    def changes(self) -> dict[str, object]:
        flat = {name: getattr(self, name) for name in self.model_fields_set if name != "tax_profile"}
        if self.tax_profile is not None:
            flat.update({name: getattr(self.tax_profile, name) for name in self.tax_profile.model_fields_set})
        nulls = sorted(name for name, value in flat.items() if value is None)
        if nulls:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "The request is not valid.",
                [{"field": f"body.{name}", "message": "may not be null"} for name in nulls],
            )
        return flat


@router.get("/me", summary="Who I am: role, tier, risk and tax profile")
async def read_me(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    return success(request, await res.accounts.me(principal))


@router.patch("/me", summary="Change my risk profile or tax profile")
async def update_me(
    body: ProfileChanges, principal: PersonPrincipal, request: Request, res: ResourcesDep, ip: ClientIp
) -> JSONResponse:
    changes = body.changes()
    if changes.get("filing_status", JOINT_FILING_STATUS) != JOINT_FILING_STATUS:
        assert res.pool is not None
        async with res.pool.connection() as conn:
            if await files_jointly(conn, principal.user_id):
                raise ApiError(
                    409,
                    "HOUSEHOLD_FILES_JOINTLY",
                    "You are in a joint-filing household: your filing status stays married_joint until"
                    " you leave it (DELETE /api/v1/me/household).",
                )
    return success(request, await res.accounts.update_me(principal, changes, ip=ip))
