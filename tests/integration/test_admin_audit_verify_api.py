"""GET /api/v1/admin/audit/verify: the audit chain walked from its start, as `wealthalloc audit verify` does.

An admin reads whether the chain is intact, how many entries were checked and, when a row was
altered, which row breaks it first; nobody else may ask. Real PostgreSQL, Redis and Ray Serve.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.integration.people import Investor, Login, data, error, new_person

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(http: httpx.Client, database_url: str) -> Login:
    return new_person(http, database_url, role="admin", prefix="chain").login()


def audited(database_url: str) -> int:
    """The number of audit rows once there is at least one (the audit logger writes them from events)."""
    deadline = time.monotonic() + 20
    with psycopg.connect(database_url) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM audit_log").fetchone()
            assert row is not None
            if row[0] or time.monotonic() > deadline:
                return int(row[0])
            time.sleep(0.2)


@contextlib.contextmanager
def altered(database_url: str) -> Iterator[dict[str, Any]]:
    """The newest audit row with its details changed behind the chain's back, put back afterwards."""
    assert audited(database_url) > 0
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT id, details FROM audit_log ORDER BY sequence DESC LIMIT 1").fetchone()
        assert row is not None
        conn.execute(
            'UPDATE audit_log SET details = details || \'{"amount": "1000000.00"}\'::jsonb WHERE id = %s',
            (row["id"],),
        )
    try:
        yield row
    finally:
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "UPDATE audit_log SET details = %s WHERE id = %s", (Jsonb(row["details"]), row["id"])
            )


@pytest.fixture
def altered_row(database_url: str) -> Iterator[dict[str, Any]]:
    with altered(database_url) as row:
        yield row


def test_an_admin_reads_that_the_chain_is_intact_and_how_many_entries_were_checked(
    http: httpx.Client, admin: Login, database_url: str
) -> None:
    at_least = audited(database_url)
    report = data(http.get("/api/v1/admin/audit/verify", headers=admin.headers))
    assert report["valid"] is True and report["first_bad_id"] is None and report["problems"] == []
    assert report["checked"] >= at_least > 0


def test_an_altered_row_makes_the_chain_invalid_and_is_named_as_the_first_bad_one(
    http: httpx.Client, admin: Login, altered_row: dict[str, Any]
) -> None:
    report = data(http.get("/api/v1/admin/audit/verify", headers=admin.headers))
    assert report["valid"] is False
    assert report["first_bad_id"] == str(altered_row["id"])
    assert any("altered" in problem for problem in report["problems"])


def test_nobody_but_an_admin_may_verify_the_chain(http: httpx.Client, database_url: str) -> None:
    investor = Investor(http, database_url)
    error(investor.get("/api/v1/admin/audit/verify"), 403, "FORBIDDEN")
    advisor = new_person(http, database_url, role="advisor", prefix="chain").login()
    error(http.get("/api/v1/admin/audit/verify", headers=advisor.headers), 403, "FORBIDDEN")
    error(http.get("/api/v1/admin/audit/verify"), 401, "UNAUTHORIZED")
