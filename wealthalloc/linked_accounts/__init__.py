"""Linked brokerage accounts, as pure rules: what an account number may look like and how it is
shown, a positions statement in CSV, and the differences between a broker's positions and ours.

Storage, encryption and the broker connections are elsewhere; nothing here touches them.
"""

from wealthalloc.linked_accounts._csv import CSV_COLUMNS, StatementError, parse_statement
from wealthalloc.linked_accounts._numbers import PROVIDERS, InvalidAccountNumber, mask, normalize
from wealthalloc.linked_accounts._reconcile import (
    BrokerPosition,
    BrokerSnapshot,
    Difference,
    DifferenceKind,
    HeldPosition,
    PendingLot,
    Reconciliation,
    StatementLot,
    reconcile,
)

__all__ = [
    "CSV_COLUMNS",
    "PROVIDERS",
    "BrokerPosition",
    "BrokerSnapshot",
    "Difference",
    "DifferenceKind",
    "PendingLot",
    "Reconciliation",
    "StatementLot",
    "HeldPosition",
    "InvalidAccountNumber",
    "StatementError",
    "mask",
    "normalize",
    "parse_statement",
    "reconcile",
]
