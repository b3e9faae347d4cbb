"""Learn: the catalogue of short articles shipped with the platform, and each person's progress.

The articles are package data (``wealthalloc.learn``), the same for everyone; what is stored is
which of them a person has finished. An unknown slug is 404, like any other missing resource.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from serve_apps.api.deps import CurrentPrincipal, ResourcesDep, require_access
from serve_apps.api.envelope import ApiError, success
from wealthalloc.learn import Article, article, catalogue
from wealthalloc.security.access import Principal
from wealthalloc.storage import learn_progress as store

router = APIRouter(prefix="/api/v1/learn", tags=["learn"])

Slug = Annotated[str, Path(max_length=100, description="The article's slug, e.g. diversification")]


async def _pool(res: Any, principal: Principal, *, write: bool) -> Any:
    """The pool, once the caller may read (or change) their own progress (an API key needs a scope)."""
    await require_access(res, principal, principal.user_id, write=write, what="learning progress")
    assert res.pool is not None
    return res.pool


def _known(slug: str) -> Article:
    found = article(slug)
    if found is None:
        raise ApiError(404, "NOT_FOUND", "No such article.")
    return found


@router.get("/articles", summary="The articles, in reading order, each with whether I finished it")
async def list_articles(principal: CurrentPrincipal, request: Request, res: ResourcesDep) -> JSONResponse:
    pool = await _pool(res, principal, write=False)
    async with pool.connection() as conn:
        done = await store.completed(conn, principal.user_id)
    return success(request, [{**a.summary_dict(), "completed_at": done.get(a.slug)} for a in catalogue()])


@router.get("/articles/{slug}", summary="One article's text, as headings, paragraphs and lists")
async def read_article(
    slug: Slug, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    found = _known(slug)
    pool = await _pool(res, principal, write=False)
    async with pool.connection() as conn:
        done = await store.completed(conn, principal.user_id)
    return success(request, {**found.as_dict(), "completed_at": done.get(found.slug)})


@router.post("/articles/{slug}/complete", summary="Mark an article finished (again changes nothing)")
async def complete_article(
    slug: Slug, principal: CurrentPrincipal, request: Request, res: ResourcesDep
) -> JSONResponse:
    found = _known(slug)
    pool = await _pool(res, principal, write=True)
    async with pool.connection() as conn, conn.transaction():
        completed_at = await store.complete(conn, principal.user_id, found.slug)
    return success(request, {"slug": found.slug, "completed_at": completed_at})
