"""Tax reports from trade histories: reading them, checking them and feeding the pure engine.

The rules live in :mod:`wealthalloc.domain.wash_sale`, :mod:`wealthalloc.domain.gains_report`,
:mod:`wealthalloc.domain.harvest` and :mod:`wealthalloc.domain.similarity`; this package is
where outside input (a CSV file today) becomes their validated input.
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
