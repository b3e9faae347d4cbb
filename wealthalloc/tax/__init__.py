"""Tax reports and harvesting: where outside input and stored books meet the pure engine.

The rules live in :mod:`wealthalloc.domain.wash_sale`, :mod:`wealthalloc.domain.gains_report`,
:mod:`wealthalloc.domain.harvest` and :mod:`wealthalloc.domain.similarity`. This package turns
a CSV file or an API body into their validated input (:mod:`.transactions_csv`, :mod:`.report`)
and a taxpayer's stored lots, orders and profile into harvesting opportunities (:mod:`.harvesting`).
"""

from wealthalloc.tax.transactions_csv import (
    CsvProblem,
    TransactionsCsvError,
    parse_identity_groups_csv,
    parse_transactions_csv,
    read_identity_groups_csv,
    read_transactions_csv,
)

__all__ = [
    "CsvProblem",
    "TransactionsCsvError",
    "parse_identity_groups_csv",
    "parse_transactions_csv",
    "read_identity_groups_csv",
    "read_transactions_csv",
]
