"""The statuses in which an order is still working: the one definition.

An order in one of these holds cash (a buy's reservation) or shares (a sell's
quantity) back, may still fill, and may be cancelled; every other status is
final. The domain's rules, the storage queries and the brokers read it here.
"""

from __future__ import annotations

OPEN_STATUSES: tuple[str, ...] = ("pending", "submitted", "partially_filled")
