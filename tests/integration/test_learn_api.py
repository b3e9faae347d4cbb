"""The Learn API: the article catalogue, one article's text, and each person's reading progress.

Real PostgreSQL, Redis and Ray Serve. Progress is a person's own: finishing an article shows in
their list and nobody else's; finishing it again keeps the first time; an unknown slug is 404.
"""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error
from wealthalloc.learn import catalogue

pytestmark = pytest.mark.integration


def test_the_catalogue_lists_every_article_in_order_with_level_reading_time_and_nothing_read(
    http: httpx.Client, database_url: str
) -> None:
    listed = data(Investor(http, database_url).get("/api/v1/learn/articles"))
    assert [a["slug"] for a in listed] == [a.slug for a in catalogue()]
    for shown in listed:
        assert set(shown) == {"slug", "title", "level", "summary", "reading_minutes", "completed_at"}
        assert shown["completed_at"] is None and shown["reading_minutes"] >= 1


def test_an_article_is_read_as_blocks_and_finishing_it_is_kept_once_for_its_reader_only(
    http: httpx.Client, database_url: str
) -> None:
    reader, other = Investor(http, database_url), Investor(http, database_url)
    shown = data(reader.get("/api/v1/learn/articles/diversification"))
    assert shown["title"] == "Diversification" and shown["completed_at"] is None
    assert {b["type"] for b in shown["blocks"]} == {"heading", "paragraph", "list"}

    first = data(reader.post("/api/v1/learn/articles/diversification/complete"))
    again = data(reader.post("/api/v1/learn/articles/diversification/complete"))
    assert first["slug"] == "diversification" and again["completed_at"] == first["completed_at"]
    assert data(reader.get("/api/v1/learn/articles/diversification"))["completed_at"] == first["completed_at"]
    read = [a["slug"] for a in data(reader.get("/api/v1/learn/articles")) if a["completed_at"]]
    assert read == ["diversification"]
    assert not [a for a in data(other.get("/api/v1/learn/articles")) if a["completed_at"]]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM learn_progress WHERE user_id = %s", (reader.id,)).fetchone()
    assert rows == (1,)


def test_an_unknown_article_is_404_and_records_nothing(http: httpx.Client, database_url: str) -> None:
    reader = Investor(http, database_url)
    error(reader.get("/api/v1/learn/articles/no-such-article"), 404, "NOT_FOUND")
    error(reader.post("/api/v1/learn/articles/no-such-article/complete"), 404, "NOT_FOUND")
    error(reader.post("/api/v1/learn/articles/..%2Fdiversification/complete"), 404, "NOT_FOUND")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM learn_progress WHERE user_id = %s", (reader.id,)).fetchone()
    assert rows == (0,)


def test_learning_needs_a_sign_in(http: httpx.Client) -> None:
    error(http.get("/api/v1/learn/articles"), 401, "UNAUTHORIZED")
    error(http.post("/api/v1/learn/articles/diversification/complete"), 401, "UNAUTHORIZED")
