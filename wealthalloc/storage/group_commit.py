"""Group commit: the changes a shard is asked for at the same moment share one transaction.

A shard receives many users' changes at once (orders, deposits), each under its
own user's lock, so no two of them touch the same book. Committed one by one,
each pays a connection checkout, ``BEGIN``, ``COMMIT`` and the WAL flush of its
own. Here a change waiting while another group is being written joins the
next group: the group runs its changes one after another on one connection,
each inside its own savepoint, and commits once.

- A change that fails (a refusal, a constraint) rolls back to its savepoint and
  fails alone; the group's other changes commit.
- A group holds the row locks of all its users until its commit, so two groups
  can wait on each other where two single changes would not (a household's row
  locked by a spouse on another shard). The change PostgreSQL picks as the
  deadlock's victim rolls back to its savepoint and runs again, alone, after
  its group committed.
- A change is answered only after the group's ``COMMIT`` returned: nothing is
  acknowledged that a crash could lose. If the commit fails for a constraint
  (one checked at ``COMMIT``, or a row written for the whole group), no change
  was applied and each runs again alone, so only the change that broke it
  fails. If it fails otherwise, every change of the group fails and was not
  applied; its caller's retry (same Idempotency-Key) applies it once.
- Idle, a change starts at once and commits alone: grouping adds no wait, it
  only gathers what queued while the database was busy.
- A change runs in its caller's context (contextvars), not the writer's: its
  trace spans and log fields are its own request's.
- The rows no change reads back (events, trades, cash movements, cash, holdings, the keys'
  answers: see :mod:`wealthalloc.storage.held_writes`) are held for the whole group and
  written once, one statement a table, before the ``COMMIT``. Such a row should not break a constraint its
  change's checks did not already rule out; if one does, no change of the group is applied and
  each runs again alone, so the change that broke it fails alone.
- The transaction runs in psycopg's pipeline mode: a statement whose result
  nobody reads (an event, a cash movement, the key's stored answer, the
  ``COMMIT``) is sent with the next one that is read, not waited for alone.
  Each change's savepoint ends with a sync (:func:`savepoint`), so an error of
  a statement sent late still fails the change that sent it, not the next one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool

from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.storage import held_writes

T = TypeVar("T")
# Failures that say nothing about the change itself, only about when it ran.
RUN_AGAIN = (errors.DeadlockDetected, errors.SerializationFailure, errors.LockNotAvailable)
Unit = Callable[[AsyncConnection[Any]], Coroutine[Any, Any, T]]


@dataclass(slots=True)
class _Queued(Generic[T]):
    unit: Unit[T]
    answer: asyncio.Future[T]
    context: contextvars.Context

    async def run(self, conn: AsyncConnection[Any]) -> T:
        """The unit on ``conn``, as a task in its caller's context."""
        return await asyncio.create_task(self.unit(conn), context=self.context)


class GroupCommit:
    """Runs units of work in shared transactions; ``max_group=1`` commits each alone."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, max_group: int = 64, writers: int = 2) -> None:
        """``writers`` groups may be open at once: while one commits, the next is being written."""
        self._pool = pool
        self._max_group = max(1, max_group)
        self._writers = max(1, writers)
        self._queue: deque[_Queued[Any]] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, unit: Unit[T]) -> T:
        """``unit(conn)`` inside a transaction, committed before this returns its result."""
        if self._max_group == 1:
            return await self._alone(unit)
        answer: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(unit, answer, contextvars.copy_context()))
        if len(self._running) < self._writers:
            task = asyncio.create_task(self._write())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        # A caller that stops waiting does not stop its change: it may still commit, and the
        # caller's retry under the same key then finds it.
        return await asyncio.shield(answer)

    async def _write(self) -> None:
        while self._queue:
            group = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_group))]
            await self._commit(group)

    async def _commit(self, group: list[_Queued[Any]]) -> None:
        ops_metrics.SHARD_COMMIT_GROUP.observe(len(group))
        outcomes: list[tuple[_Queued[Any], BaseException | None, Any]] = []
        try:
            async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
                if len(group) == 1:  # alone: no savepoint needed, its failure is the transaction's
                    outcomes.append((group[0], None, await group[0].run(conn)))
                else:
                    # The rows no change reads back go once for the group, before its COMMIT.
                    async with held_writes.group_rows(conn) as leaves:
                        for queued in group:
                            leaves.begin()
                            try:
                                async with savepoint(conn):  # a failure undoes this change only
                                    result = await queued.run(conn)
                                outcomes.append((queued, None, result))
                            except Exception as exc:
                                leaves.forget()
                                outcomes.append((queued, exc, None))
        except BaseException as exc:
            if isinstance(exc, errors.IntegrityError) and len(outcomes) == len(group) > 1:
                # Every change ran, and a row written for the whole group (or a constraint checked
                # at COMMIT) was refused: whose it was cannot be told, so each runs again alone.
                await self._answer_all(
                    outcomes, again=lambda error: error is None or isinstance(error, RUN_AGAIN)
                )
                return
            # Nothing of the group committed: each change fails with its own refusal, or the
            # commit's error when it had none.
            failed = {id(q): e for q, e, _ in outcomes if e is not None}
            for queued in group:
                _answer(queued.answer, failed.get(id(queued), exc), None)
            if not isinstance(exc, Exception):
                raise
            return
        await self._answer_all(outcomes, again=lambda error: isinstance(error, RUN_AGAIN))

    async def _answer_all(
        self,
        outcomes: list[tuple[_Queued[Any], BaseException | None, Any]],
        *,
        again: Callable[[BaseException | None], bool],
    ) -> None:
        """Answer each change of a group: with its outcome there, or, where ``again`` says so of it,
        with the outcome of running it once more in a transaction of its own."""
        for queued, error, result in outcomes:
            if again(error):
                try:
                    result, error = await self._alone(queued.run), None
                except Exception as exc:
                    result, error = None, exc
            _answer(queued.answer, error, result)

    async def _alone(self, unit: Unit[T]) -> T:
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            return await unit(conn)


@asynccontextmanager
async def savepoint(conn: AsyncConnection[Any]) -> AsyncIterator[None]:
    """A savepoint whose statements have all been answered before it is released or rolled back.

    In pipeline mode a statement nobody reads is answered only at the next sync; without one here,
    its error (a constraint, a deadlock) would surface in the next change and fail that one.

    Rows a block holds (:mod:`wealthalloc.storage.held_writes`) are written before the savepoint: a
    rollback to it undoes only what came after it, never rows held before it and written inside it.
    """
    await held_writes.flush(conn)
    async with conn.transaction(), conn.pipeline():
        yield


def _answer(answer: asyncio.Future[Any], error: BaseException | None, result: Any) -> None:
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(result)
