"""The Learn catalogue: articles shipped with the package, parsed into blocks a page shows as text."""

from __future__ import annotations

import pytest

from wealthalloc.learn import LEVELS, ArticleError, article, catalogue, parse

ARTICLE = """title: Fees and compounding
level: beginner
order: 3
summary: How a small yearly fee grows.

## Compounding

Money that earns a return
earns a return on that return.

- Expense ratios
- Commissions
"""


def test_the_catalogue_covers_the_core_ideas_in_reading_order_with_levels_and_reading_times() -> None:
    articles = catalogue()
    slugs = [a.slug for a in articles]
    for needed in (
        "diversification",
        "tax-loss-harvesting",
        "rebalancing",
        "risk-measures",
        "account-types",
        "fees-and-compounding",
    ):
        assert needed in slugs
    assert 6 <= len(articles) <= 8 and len(set(slugs)) == len(slugs)
    assert [a.order for a in articles] == sorted(a.order for a in articles)
    for a in articles:
        assert a.level in LEVELS and a.title and a.summary
        assert 1 <= a.reading_minutes <= 5 and a.reading_minutes * 200 >= a.words
        assert a.blocks[0].kind == "heading" and any(b.kind == "paragraph" for b in a.blocks)


def test_the_wash_sale_article_states_the_61_day_window() -> None:
    harvesting = article("tax-loss-harvesting")
    assert harvesting is not None
    text = " ".join(b.text for b in harvesting.blocks)
    assert "30 days before or after" in text and "61 days" in text


def test_an_article_is_parsed_into_headings_paragraphs_and_lists() -> None:
    parsed = parse("fees", ARTICLE)
    assert (parsed.title, parsed.level, parsed.order) == ("Fees and compounding", "beginner", 3)
    assert [b.as_dict() for b in parsed.blocks] == [
        {"type": "heading", "text": "Compounding"},
        {"type": "paragraph", "text": "Money that earns a return earns a return on that return."},
        {"type": "list", "items": ["Expense ratios", "Commissions"]},
    ]
    assert parsed.reading_minutes == 1
    assert set(parsed.as_dict()) == {"slug", "title", "level", "summary", "reading_minutes", "blocks"}


def test_markup_in_an_article_stays_text() -> None:
    parsed = parse("odd", ARTICLE.replace("Commissions", "<img src=x onerror=alert(1)>"))
    assert parsed.blocks[-1].items[-1] == "<img src=x onerror=alert(1)>"


def test_an_unknown_slug_is_no_article() -> None:
    assert article("no-such-article") is None
    assert article("../diversification") is None


@pytest.mark.parametrize(
    ("slug", "text", "why"),
    [
        ("Bad Slug", ARTICLE, "not a slug"),
        ("fees", ARTICLE.replace("level: beginner", "level: expert"), "level"),
        ("fees", ARTICLE.replace("order: 3", "order: third"), "whole number"),
        ("fees", ARTICLE.replace("summary: How a small yearly fee grows.\n", ""), "lacks"),
        ("fees", ARTICLE.replace("title:", "author:"), "header line"),
        ("fees", ARTICLE.replace("\n\n", "\n"), "blank line"),
        ("fees", ARTICLE.split("\n\n")[0] + "\n\n", "empty"),
    ],
)
def test_a_malformed_article_file_is_refused_with_the_reason(slug: str, text: str, why: str) -> None:
    with pytest.raises(ArticleError, match=why):
        parse(slug, text)
