"""Events as the outbox relay puts them on the streams, for tests that hand them to a consumer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from wealthalloc.events.relay import Event


def cash_moved(
    user_id: uuid.UUID | None, sequence: int = 1, *, at: datetime | None = None, **payload: Any
) -> Event:
    """A ``portfolio.cash_moved`` event of ``user_id`` (None: nobody's), happened ``at`` (now)."""
    return Event(
        id=uuid.uuid4(),
        sequence=sequence,
        topic="portfolio.updates",
        type="portfolio.cash_moved",
        version=1,
        user_id=user_id,
        aggregate_id=None,
        occurred_at=at or datetime.now(UTC),
        payload=payload,
    )
