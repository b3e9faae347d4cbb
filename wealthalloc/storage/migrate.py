"""Numbered plain-SQL migrations, applied once each, safely from several processes at a time.

The files ``migrations/NNNN_name.sql`` ship inside the package and are applied in
order of their number. Each file runs in its own transaction together with the
``schema_migrations`` row that records it, so a file is either fully applied and
recorded or not at all.

Why a lock row and not ``pg_advisory_xact_lock``: the same code must run against
CockroachDB, which has no advisory locks. Every transaction that applies a file
first takes ``SELECT ... FOR UPDATE`` on the single row of
``schema_migrations_lock``; a second ``migrate`` (another replica starting, a test
worker) waits there, then sees the row the first one committed and skips the file.

Why checksums: a file that changed after it was applied means the database and
the code disagree about the schema. That is refused loudly (:class:`MigrationError`)
rather than silently ignored; write a new numbered file instead of editing an old one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealthalloc.logging import get_logger

log = get_logger(__name__)

_Conn = psycopg.Connection[tuple[Any, ...]]

MIGRATIONS_PACKAGE = "wealthalloc.storage"
MIGRATIONS_DIR = "migrations"
MAINTENANCE_DATABASE = "postgres"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<label>[a-z0-9_]+)\.sql$")
# CockroachDB answers lock contention under SERIALIZABLE with a retryable error; so can
# PostgreSQL when two processes race to create the bookkeeping tables.
_MAX_ATTEMPTS = 5

_BOOTSTRAP = (
    b"""
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version    INT PRIMARY KEY,
        name       TEXT NOT NULL,
        checksum   TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    b"""
    CREATE TABLE IF NOT EXISTS schema_migrations_lock (
        id        INT PRIMARY KEY CHECK (id = 1),
        locked_at TIMESTAMPTZ
    )
    """,
    b"INSERT INTO schema_migrations_lock (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
)


class MigrationError(Exception):
    """The migrations cannot be applied as they are; the message says what to fix."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of the package."""

    version: int
    name: str
    sql: str
    checksum: str


@dataclass(frozen=True)
class MigrationReport:
    """What one ``migrate`` call did: the files it applied, in order, and how many were already there."""

    applied: list[str] = field(default_factory=list)
    already_applied: int = 0


def load_migrations() -> list[Migration]:
    """The package's migration files, sorted by version.

    Read through ``importlib.resources`` so they are found in a wheel or a zip as well
    as in a source checkout.
    """
    folder = resources.files(MIGRATIONS_PACKAGE).joinpath(MIGRATIONS_DIR)
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"two migration files share version {version}: {found[version].name}, {entry.name}"
            )
        raw = entry.read_bytes()
        found[version] = Migration(
            version=version,
            name=entry.name,
            sql=raw.decode("utf-8"),
            checksum=hashlib.sha256(raw).hexdigest(),
        )
    return [found[version] for version in sorted(found)]


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` when it does not exist; True when this call created it.

    ``CREATE DATABASE`` cannot run inside the database it creates, so this connects to
    the ``postgres`` maintenance database of the same server (CockroachDB has one too).
    Two callers racing are fine: the loser sees the database exists and returns False.
    """
    params = conninfo_to_dict(url)
    name = params.get("dbname")
    if not name:
        raise MigrationError(f"the database URL names no database: {_redact(url)}")
    params["dbname"] = MAINTENANCE_DATABASE
    with psycopg.connect(make_conninfo("", **params), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            return False
    log.info("database created", database=name)
    return True


def pending(url: str) -> list[str]:
    """Names of the migration files not yet applied to the database at ``url``, in order."""
    migrations = load_migrations()
    with psycopg.connect(url, autocommit=True) as conn:
        table = conn.execute(
            "SELECT 1 FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        ).fetchone()
        if table is None:
            return [m.name for m in migrations]
        applied = _applied_checksums(conn)
    _verify_checksums(migrations, applied)
    return [m.name for m in migrations if m.version not in applied]


def migrate(url: str) -> MigrationReport:
    """Apply every pending migration to the database at ``url``, each once, in order.

    Safe to call from several processes at once and idempotent: a second call applies
    nothing. Raises :class:`MigrationError` when an applied file has since changed.
    """
    migrations = load_migrations()
    applied_now: list[str] = []
    already = 0
    with psycopg.connect(url, autocommit=True) as conn:
        _bootstrap(conn)
        _verify_checksums(migrations, _applied_checksums(conn))
        for migration in migrations:
            if _apply_one(conn, migration):
                applied_now.append(migration.name)
            else:
                already += 1
    if applied_now:
        log.info("migrations applied", applied=applied_now, already_applied=already)
    return MigrationReport(applied=applied_now, already_applied=already)


def _bootstrap(conn: _Conn) -> None:
    """Create the bookkeeping tables; a concurrent creator winning the race is not an error."""
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            with conn.transaction():
                for statement in _BOOTSTRAP:
                    conn.execute(statement)
            return
        except (
            errors.UniqueViolation,
            errors.DuplicateTable,
            errors.DuplicateObject,
            errors.SerializationFailure,
        ):
            # PostgreSQL's CREATE TABLE IF NOT EXISTS is not atomic against a concurrent twin:
            # the loser gets a duplicate-key error on the catalog, or finds the table's row type
            # already made (DuplicateObject). The next try sees the table.
            if attempt == _MAX_ATTEMPTS:
                raise


def _apply_one(conn: _Conn, migration: Migration) -> bool:
    """Apply one file with its record in one transaction under the lock row; False if already applied."""
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            with conn.transaction():
                conn.execute("SELECT id FROM schema_migrations_lock WHERE id = 1 FOR UPDATE")
                # Read after the lock is held: in READ COMMITTED this statement sees what a
                # concurrent migrator committed while we waited.
                row = conn.execute(
                    "SELECT checksum FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if row is not None:
                    _verify_checksums([migration], {migration.version: str(row[0])})
                    return False
                try:
                    # bytes: a query without parameters goes through the simple protocol, which
                    # runs a whole file of statements; and % in it is not a placeholder.
                    conn.execute(migration.sql.encode("utf-8"))
                except errors.SerializationFailure:
                    raise
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                conn.execute("UPDATE schema_migrations_lock SET locked_at = now() WHERE id = 1")
            return True
        except errors.SerializationFailure:
            if attempt == _MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _applied_checksums(conn: _Conn) -> dict[int, str]:
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def _verify_checksums(migrations: list[Migration], applied: dict[int, str]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} was changed after it was applied "
                f"(recorded checksum {recorded[:12]}…, file {migration.checksum[:12]}…); "
                "restore the file and put the change in a new numbered migration"
            )


def _redact(url: str) -> str:
    params = conninfo_to_dict(url)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)
