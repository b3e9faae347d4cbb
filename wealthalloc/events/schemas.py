"""The payload of every event type, versioned: ``(event type, version) -> pydantic model``.

Events outlive the code that wrote them (the outbox is replayable and webhook
receivers store what they get), so a payload's shape is a contract. It is
checked when the event is written (:func:`validate_payload` from ``add_event``)
rather than discovered broken by a consumer later.

Rules for changing a payload:

- adding an optional field, or a field that a writer always fills, keeps the
  version (fields a model does not name are kept as they are, so a writer may
  add one before the model does);
- renaming, removing, or changing the type or meaning of a field is a new
  version: register a new model under ``version=2`` and keep the old one, so
  old events still validate on replay.

Money, quantities and prices are :class:`~decimal.Decimal` and leave as decimal
strings, ids as UUID strings, exactly as ``add_event`` has always written them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Side = Literal["buy", "sell"]
Term = Literal["short", "long", "mixed"]


class UnknownEventType(LookupError):
    """No payload model is registered for this event type and version."""


class InvalidPayload(ValueError):
    """The payload does not match the model of its event type and version."""

    def __init__(self, event_type: str, version: int, errors: list[dict[str, Any]]) -> None:
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) or "payload" for e in errors[:5])
        super().__init__(f"payload of {event_type} v{version} is not valid ({fields})")
        self.event_type = event_type
        self.version = version
        self.errors = errors


class EventPayload(BaseModel):
    """Base of every payload model: fields a model does not name are kept (additive changes)."""

    model_config = ConfigDict(extra="allow", frozen=True)


M = TypeVar("M", bound=type[EventPayload])

_REGISTRY: dict[tuple[str, int], type[EventPayload]] = {}


def register(event_type: str, version: int = 1) -> Callable[[M], M]:
    """Class decorator: ``model`` is the payload of ``event_type`` at ``version``."""

    def decorate(model: M) -> M:
        key = (event_type, version)
        if key in _REGISTRY:
            raise ValueError(f"{event_type} v{version} already has a payload model")
        _REGISTRY[key] = model
        return model

    return decorate


def registry() -> Mapping[tuple[str, int], type[EventPayload]]:
    """Every registered ``(event type, version) -> model``."""
    return dict(_REGISTRY)


def event_types() -> frozenset[str]:
    """The event types that have at least one payload model."""
    return frozenset(event_type for event_type, _ in _REGISTRY)


def latest_version(event_type: str) -> int:
    versions = [v for t, v in _REGISTRY if t == event_type]
    if not versions:
        raise UnknownEventType(f"no payload model for event type {event_type!r}")
    return max(versions)


def schema_for(event_type: str, version: int = 1) -> type[EventPayload]:
    try:
        return _REGISTRY[(event_type, version)]
    except KeyError:
        raise UnknownEventType(f"no payload model for {event_type!r} version {version}") from None


def validate_payload(
    event_type: str, version: int, payload: Mapping[str, Any], *, strict: bool = True
) -> dict[str, Any]:
    """The payload checked against its model and in its JSON form (decimals and ids as strings).

    Only the fields the writer gave come back (defaults are not added), so validating changes
    the form of a payload, never its content.

    An event type or version without a model is :class:`UnknownEventType` when ``strict``
    (the default: a new event type comes with its model), otherwise the payload passes as is.
    A payload that does not match its model is :class:`InvalidPayload` either way.
    """
    model = _REGISTRY.get((event_type, version))
    if model is None:
        if strict:
            raise UnknownEventType(f"no payload model for {event_type!r} version {version}")
        return dict(payload)
    try:
        checked = model.model_validate(dict(payload))
    except ValidationError as exc:
        raise InvalidPayload(event_type, version, [dict(e) for e in exc.errors()]) from exc
    return checked.model_dump(mode="json", exclude_unset=True, fallback=str)


# Portfolios (topic portfolio.updates) ---------------------------------------------------------------


@register("portfolio.created")
class PortfolioCreatedV1(EventPayload):
    portfolio_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    by: uuid.UUID | None = None


@register("portfolio.updated")
class PortfolioUpdatedV1(EventPayload):
    portfolio_id: uuid.UUID
    changed: list[str]
    version: int = Field(ge=1)


@register("portfolio.deleted")
class PortfolioDeletedV1(EventPayload):
    portfolio_id: uuid.UUID
    by: uuid.UUID | None = None


@register("portfolio.cash_moved")
class PortfolioCashMovedV1(EventPayload):
    """A deposit (amount > 0) or a withdrawal (amount < 0) and the balance after it."""

    portfolio_id: uuid.UUID
    movement_id: uuid.UUID
    amount: Decimal
    balance: Decimal = Field(ge=0)


@register("portfolio.lot_transferred_in")
class PortfolioLotTransferredInV1(EventPayload):
    portfolio_id: uuid.UUID
    lot_id: uuid.UUID
    symbol: str = Field(min_length=1, max_length=16)
    shares: Decimal = Field(gt=0)


@register("portfolio.lot_confirmed")
class PortfolioLotConfirmedV1(EventPayload):
    """Pending transfer-in lots became sellable: ``by`` an advisor or admin with a ``reason``, or by
    the sync of ``linked_account_id`` (``by`` null)."""

    portfolio_id: uuid.UUID
    lot_ids: list[uuid.UUID] = Field(min_length=1)
    by: uuid.UUID | None = None
    reason: str = Field(min_length=1, max_length=500)
    linked_account_id: uuid.UUID | None = None


# Linked accounts (topic portfolio.updates): never the account number, only its masked form.


class _LinkedAccountRef(EventPayload):
    linked_account_id: uuid.UUID
    portfolio_id: uuid.UUID
    provider: Literal["ibkr", "csv"]
    account_number_masked: str = Field(pattern=r"^\*{4}[A-Z0-9-]{1,4}$")


@register("linked_account.linked")
class LinkedAccountLinkedV1(_LinkedAccountRef):
    pass


@register("linked_account.unlinked")
class LinkedAccountUnlinkedV1(_LinkedAccountRef):
    pass


@register("linked_account.synced")
class LinkedAccountSyncedV1(_LinkedAccountRef):
    differences: int = Field(ge=0)
    resolved: int = Field(ge=0)
    transfers_in: list[uuid.UUID]
    confirmed: list[uuid.UUID]


@register("linked_account.sync_failed")
class LinkedAccountSyncFailedV1(_LinkedAccountRef):
    reason: str = Field(max_length=500)


# Trades (topic trades.executed) ---------------------------------------------------------------------


class _OrderRef(EventPayload):
    order_id: uuid.UUID
    portfolio_id: uuid.UUID
    symbol: str = Field(min_length=1, max_length=16)


@register("trades.order_placed")
class TradeOrderPlacedV1(_OrderRef):
    """An order accepted and recorded; ``price`` is the limit price (None for a market order)."""

    side: Side
    quantity: Decimal = Field(gt=0)
    order_type: Literal["market", "limit", "stop", "stop_limit"] | None = None
    price: Decimal | None = Field(default=None, gt=0)
    commission: Decimal | None = Field(default=None, ge=0)
    fill_id: str | None = None
    reserved_cash: Decimal | None = Field(default=None, ge=0)
    by: uuid.UUID | None = None


@register("trades.executed")
class TradeExecutedV1(_OrderRef):
    """One fill of an order: ``quantity`` shares at ``price``, identified by ``fill_id``."""

    side: Side
    quantity: Decimal = Field(gt=0)
    price: Decimal = Field(gt=0)
    commission: Decimal = Field(ge=0)
    fill_id: str = Field(min_length=1, max_length=255)
    trade_id: uuid.UUID | None = None
    cash_balance: Decimal | None = None
    order_status: str | None = None


@register("trades.order_cancelled")
@register("trades.order_rejected")
@register("trades.order_expired")
class TradeOrderClosedV1(_OrderRef):
    """An order that ended without filling completely; fills before the end stand (``filled_quantity``)."""

    side: Side | None = None
    quantity: Decimal | None = Field(default=None, gt=0)
    price: Decimal | None = Field(default=None, gt=0)
    commission: Decimal | None = Field(default=None, ge=0)
    fill_id: str | None = None
    filled_quantity: Decimal | None = Field(default=None, ge=0)
    reason: str | None = None


# Tax, recommendations, prices -----------------------------------------------------------------------


@register("tax_harvests.identified")
class TaxHarvestIdentifiedV1(EventPayload):
    harvest_id: uuid.UUID
    portfolio_id: uuid.UUID
    symbol: str = Field(min_length=1, max_length=16)
    loss_amount: Decimal = Field(ge=0)
    term: Term
    estimated_tax_savings: Decimal = Field(ge=0)
    replacement_symbol: str | None = Field(default=None, min_length=1, max_length=16)
    lot_ids: list[uuid.UUID] = Field(default_factory=list)


@register("tax_harvests.executed")
class TaxHarvestExecutedV1(EventPayload):
    """A harvest carried out (topic ``tax_harvests.identified``): its lots are sold, the replacement
    bought, and buying ``symbol`` back in any account is refused through ``wash_sale_window_end``."""

    harvest_id: uuid.UUID
    portfolio_id: uuid.UUID
    symbol: str = Field(min_length=1, max_length=16)
    replacement_symbol: str = Field(min_length=1, max_length=16)
    loss_amount: Decimal = Field(ge=0)
    estimated_tax_savings: Decimal = Field(ge=0)
    wash_sale_window_end: date
    lot_ids: list[uuid.UUID] = Field(default_factory=list)
    by: uuid.UUID | None = None


@register("recommendations.generated")
class RecommendationGeneratedV1(EventPayload):
    """A recommendation as of a change: ``status`` says which (absent in events written before it was).

    ``open``: generated, or regenerated in place with new figures; ``accepted``: its orders were placed
    under ``order_keys`` (Idempotency-Keys, unique per user in ``orders``); ``dismissed``: ``reason`` is
    the user's; ``expired``: a later run no longer found it, ``reason`` says so.
    """

    recommendation_id: uuid.UUID
    portfolio_id: uuid.UUID | None = None
    kind: Literal["buy", "sell", "rebalance", "reduce_risk", "anomaly"]
    symbol: str | None = Field(default=None, min_length=1, max_length=16)
    confidence: Decimal = Field(ge=0, le=1)
    model_version: str | None = None
    status: Literal["open", "accepted", "dismissed", "expired"] | None = None
    as_of: date | None = None
    rationale: str | None = None
    reason: str | None = None
    order_keys: list[str] | None = None
    by: uuid.UUID | None = None


@register("prices.updated")
class PricesUpdatedV1(EventPayload):
    """New prices for ``symbols`` as of a trading day (or an instant, for intraday quotes)."""

    symbols: list[str] = Field(min_length=1)
    as_of: date | datetime
    prices: dict[str, Decimal] = Field(default_factory=dict)


@register("price_alert.triggered")
class PriceAlertTriggeredV1(EventPayload):
    """A user's price alert reached its level; it will not fire again."""

    alert_id: uuid.UUID
    symbol: str
    direction: Literal["above", "below"]
    level: Decimal
    price: Decimal
    as_of: date | datetime
    note: str | None = None


# Accounts (topic accounts.notices; read by the mailer, not by webhooks) ------------------------------


@register("auth.registration_existing_account")
class RegistrationExistingAccountV1(EventPayload):
    """Someone registered the address of an existing account. The owner is to be told (a sign-in
    or password-reset hint); the caller is answered as for a new account, so addresses do not leak."""

    email: str = Field(min_length=3, max_length=320)
    ip: str | None = Field(default=None, max_length=100)


# Households (topic accounts.notices) ---------------------------------------------------------------


@register("household.invitation_sent")
class HouseholdInvitationSentV1(EventPayload):
    """Someone invited an address to their joint-filing household (the mailer tells the address)."""

    invitation_id: uuid.UUID
    inviter_id: uuid.UUID
    invitee_email: str = Field(min_length=3, max_length=320)
    expires_at: str = Field(description="ISO-8601 instant after which the invitation cannot be accepted")


@register("household.joined")
class HouseholdJoinedV1(EventPayload):
    """An invitation was accepted: the two members' wash sales now match across both."""

    household_id: uuid.UUID
    invitation_id: uuid.UUID
    members: list[uuid.UUID]


@register("household.left")
class HouseholdLeftV1(EventPayload):
    """A member left, which ends the household for both."""

    household_id: uuid.UUID
    left_by: uuid.UUID
    members: list[uuid.UUID]


# Security notices (topic accounts.notices): changes to how a person signs in, each told to them ---------


@register("auth.new_sign_in")
class NewSignInV1(EventPayload):
    """A sign-in from an address and device the person has not signed in from lately."""

    session_id: uuid.UUID
    ip: str = Field(max_length=100)
    device: str | None = Field(default=None, max_length=300)


@register("auth.mfa_enabled")
@register("auth.mfa_disabled")
@register("auth.password_changed")
class SignInFactorChangedV1(EventPayload):
    """Two-factor sign-in turned on or off, or the password changed; the person's other logins ended."""

    sessions_ended: int = Field(ge=0)
    ip: str | None = Field(default=None, max_length=100)


@register("auth.api_key_created")
class ApiKeyCreatedV1(EventPayload):
    """An API key was made; its name and scopes only, never the key (nor its prefix)."""

    api_key_id: uuid.UUID
    name: str = Field(max_length=200)
    scopes: list[str]
    ip: str | None = Field(default=None, max_length=100)


# Notifications (topic notification.created): what a person's live stream shows them -------------


@register("notification.created")
class NotificationCreatedV1(EventPayload):
    """A notification for the event's user, as ``GET /api/v1/notifications`` lists it."""

    id: uuid.UUID
    kind: str = Field(min_length=1, max_length=50)
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(max_length=2000)
    created_at: datetime
    read_at: datetime | None = None
    link: str | None = Field(default=None, max_length=500)
    data: dict[str, Any] = Field(default_factory=dict)
