"""Learn: short articles on the ideas the platform acts on (diversification, harvesting, risk...).

The articles ship with the package as text files (``articles/<slug>.md``): a few ``key: value``
header lines (title, level, order, summary), a blank line, then the body. The body is a small,
fixed subset of markdown (``## `` headings, ``- `` list items, paragraphs) parsed here into
blocks, so a client renders each block as plain text in its own element and nothing in an article
is ever read as markup.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

LEVELS = ("beginner", "intermediate", "advanced")
WORDS_PER_MINUTE = 200
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
HEADER_FIELDS = frozenset({"title", "level", "order", "summary"})


class ArticleError(ValueError):
    """An article file does not follow the format (a packaging mistake, found at load time)."""


@dataclass(frozen=True)
class Block:
    """One piece of an article's body: a heading, a paragraph, or a list of items."""

    kind: Literal["heading", "paragraph", "list"]
    text: str = ""
    items: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        if self.kind == "list":
            return {"type": "list", "items": list(self.items)}
        return {"type": self.kind, "text": self.text}


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    level: str
    order: int
    summary: str
    blocks: tuple[Block, ...] = field(repr=False)

    @property
    def words(self) -> int:
        texts = [self.title, *(b.text for b in self.blocks), *(i for b in self.blocks for i in b.items)]
        return sum(len(t.split()) for t in texts)

    @property
    def reading_minutes(self) -> int:
        return max(1, math.ceil(self.words / WORDS_PER_MINUTE))

    def summary_dict(self) -> dict[str, object]:
        return {
            "slug": self.slug,
            "title": self.title,
            "level": self.level,
            "summary": self.summary,
            "reading_minutes": self.reading_minutes,
        }

    def as_dict(self) -> dict[str, object]:
        return {**self.summary_dict(), "blocks": [b.as_dict() for b in self.blocks]}


def parse(slug: str, text: str) -> Article:
    """One article from its file's text; :class:`ArticleError` says what is wrong with it."""
    if not SLUG.match(slug):
        raise ArticleError(f"{slug!r} is not a slug (lowercase words joined by hyphens)")
    head, sep, body = text.replace("\r\n", "\n").partition("\n\n")
    if not sep:
        raise ArticleError(f"{slug}: no blank line between the header and the body")
    header: dict[str, str] = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if not colon or key.strip() not in HEADER_FIELDS:
            raise ArticleError(f"{slug}: header line {line!r} is not one of {sorted(HEADER_FIELDS)}")
        header[key.strip()] = value.strip()
    missing = HEADER_FIELDS - header.keys()
    if missing:
        raise ArticleError(f"{slug}: header lacks {sorted(missing)}")
    if header["level"] not in LEVELS:
        raise ArticleError(f"{slug}: level {header['level']!r} is not one of {LEVELS}")
    if not header["order"].isdigit():
        raise ArticleError(f"{slug}: order {header['order']!r} is not a whole number")
    blocks = _blocks(body)
    if not blocks:
        raise ArticleError(f"{slug}: the body is empty")
    return Article(
        slug=slug,
        title=header["title"],
        level=header["level"],
        order=int(header["order"]),
        summary=header["summary"],
        blocks=blocks,
    )


def _blocks(body: str) -> tuple[Block, ...]:
    blocks: list[Block] = []
    for chunk in re.split(r"\n\s*\n", body.strip()):
        lines = [line.strip() for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        if len(lines) == 1 and lines[0].startswith("## "):
            blocks.append(Block("heading", text=lines[0][3:].strip()))
        elif all(line.startswith("- ") for line in lines):
            blocks.append(Block("list", items=tuple(line[2:].strip() for line in lines)))
        else:
            blocks.append(Block("paragraph", text=" ".join(lines)))
    return tuple(blocks)


@cache
def catalogue() -> tuple[Article, ...]:
    """Every shipped article, in reading order (then by title)."""
    folder = resources.files(__package__).joinpath("articles")
    articles = [
        parse(entry.name.removesuffix(".md"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".md")
    ]
    return tuple(sorted(articles, key=lambda a: (a.order, a.title)))


def article(slug: str) -> Article | None:
    """The article with this slug, or None (a slug is matched exactly, never as a path)."""
    return next((a for a in catalogue() if a.slug == slug), None)
