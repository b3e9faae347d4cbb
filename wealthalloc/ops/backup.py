"""Backups of the system of record and the model registry, and restoring one into a database.

A backup is a directory ``<backup dir>/<id>/`` holding

- ``database.dump``: ``pg_dump --format=custom`` of the database (balances,
  lots, orders, the audit chain, the event outbox: everything the platform
  can rebuild the rest from; Redis holds only caches and streams that the
  outbox replays);
- ``models.tar``: the local model registry, so a restored platform serves the
  model it served before (absent when the registry is remote: object stores
  keep their own versions);
- ``manifest.json``: when, from which database and schema version, and the size
  and sha256 of each file, so ``verify`` can tell a damaged copy from a good one
  before anyone needs it.

``restore`` never writes over data by accident: a database that already holds
tables is refused unless ``force`` is given.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealthalloc.logging import get_logger
from wealthalloc.storage.migrate import ensure_database, pending

log = get_logger(__name__)

MANIFEST = "manifest.json"
DUMP = "database.dump"
REGISTRY_TAR = "models.tar"
FORMAT_VERSION = 1
_COMMAND_TIMEOUT_S = 3600


class BackupError(Exception):
    """A backup cannot be made, read or restored; the message says what to fix."""


@dataclass(frozen=True)
class BackupFile:
    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` records about one backup."""

    id: str
    created_at: str
    database: str
    schema_version: int | None
    files: list[BackupFile]
    registry: str | None = None
    duration_s: float = 0.0
    format_version: int = FORMAT_VERSION

    def file(self, name: str) -> BackupFile | None:
        return next((f for f in self.files if f.name == name), None)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            files = [BackupFile(**f) for f in raw.pop("files")]
            return cls(files=files, **raw)
        except FileNotFoundError as exc:
            raise BackupError(f"{directory} is not a backup: it has no {MANIFEST}") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{path} cannot be read: {exc}") from exc


@dataclass(frozen=True)
class RestoreReport:
    database: str
    created_database: bool
    registry: str | None
    pending_migrations: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def _redact(url: str) -> str:
    """The URL as a manifest or log may show it: the password replaced."""
    params = conninfo_to_dict(url)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def _tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise BackupError(f"{Path(args[0]).name} failed: {lines[-1]}")
    return result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(path: Path) -> BackupFile:
    return BackupFile(path.name, path.stat().st_size, _sha256(path))


def _local_registry(uri: str) -> Path | None:
    """The registry's directory when it lives on this machine's disk; None for object stores."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)


def _schema_version(url: str) -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        table = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if table is None or table[0] is None:
            return None
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return None if row is None else row[0]


def _new_id(backup_dir: Path, now: datetime) -> str:
    base = now.strftime("%Y%m%dT%H%M%SZ")
    candidate, n = base, 1
    while (backup_dir / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def create_backup(
    *,
    database_url: str,
    registry_uri: str,
    backup_dir: Path,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Manifest:
    """Dump the database and copy the local model registry into a new directory under ``backup_dir``."""
    started = time.perf_counter()
    backup_dir.mkdir(parents=True, exist_ok=True)
    created = now()
    backup_id = _new_id(backup_dir, created)
    work = backup_dir / f".{backup_id}.partial"  # renamed into place only when complete
    work.mkdir()
    try:
        schema_version = _schema_version(database_url)
        dump = work / DUMP
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
              f"--file={dump}", f"--dbname={database_url}"])  # fmt: skip
        files = [_describe(dump)]
        registry = _local_registry(registry_uri)
        if registry is not None and registry.is_dir():
            with tarfile.open(work / REGISTRY_TAR, "w") as tar:
                tar.add(registry, arcname=".")
            files.append(_describe(work / REGISTRY_TAR))
        manifest = Manifest(
            id=backup_id,
            created_at=created.isoformat(),
            database=_redact(database_url),
            schema_version=schema_version,
            files=files,
            registry=str(registry) if registry is not None else registry_uri,
            duration_s=round(time.perf_counter() - started, 3),
        )
        (work / MANIFEST).write_text(manifest.to_json())
        work.rename(backup_dir / backup_id)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("backup_created", backup=backup_id, bytes=manifest.total_bytes, seconds=manifest.duration_s)
    return manifest


def list_backups(backup_dir: Path) -> list[Manifest]:
    """Every complete backup under ``backup_dir``, oldest first (damaged manifests are skipped)."""
    if not backup_dir.is_dir():
        return []
    found = []
    for entry in sorted(backup_dir.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and (entry / MANIFEST).is_file():
            try:
                found.append(Manifest.read(entry))
            except BackupError:
                log.warning("backup_manifest_unreadable", backup=entry.name)
    return found


def resolve(backup_dir: Path, backup: str) -> Path:
    """A backup named by id (under ``backup_dir``), by path, or ``latest``."""
    if backup == "latest":
        backups = list_backups(backup_dir)
        if not backups:
            raise BackupError(f"no backups in {backup_dir}")
        return backup_dir / backups[-1].id
    path = Path(backup)
    candidate = path if path.is_dir() else backup_dir / backup
    if not candidate.is_dir():
        raise BackupError(f"no backup {backup!r} in {backup_dir}")
    return candidate


def verify_backup(directory: Path) -> list[str]:
    """What is wrong with a backup: missing or altered files, a dump pg_restore cannot read. Empty: sound."""
    manifest = Manifest.read(directory)
    problems = []
    for recorded in manifest.files:
        path = directory / recorded.name
        if not path.is_file():
            problems.append(f"{recorded.name} is missing")
            continue
        actual = _describe(path)
        if actual.bytes != recorded.bytes:
            problems.append(f"{recorded.name} is {actual.bytes} bytes, the manifest says {recorded.bytes}")
        elif actual.sha256 != recorded.sha256:
            problems.append(f"{recorded.name} does not match its sha256 in the manifest")
    if manifest.file(DUMP) is None:
        problems.append(f"the manifest lists no {DUMP}")
    elif not problems:
        try:
            listing = _run([_tool("pg_restore"), "--list", str(directory / DUMP)]).stdout
            if "TABLE DATA" not in listing:
                problems.append(f"{DUMP} holds no table data")
        except BackupError as exc:
            problems.append(f"{DUMP} cannot be read: {exc}")
    if manifest.file(REGISTRY_TAR) is not None and not problems:
        try:
            with tarfile.open(directory / REGISTRY_TAR) as tar:
                tar.getmembers()
        except tarfile.TarError as exc:
            problems.append(f"{REGISTRY_TAR} cannot be read: {exc}")
    return problems


def _table_count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    return int(row[0]) if row else 0


def _empty_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def restore_backup(
    *,
    directory: Path,
    database_url: str,
    registry_dir: Path | None,
    force: bool = False,
) -> RestoreReport:
    """Restore a verified backup into ``database_url`` (created when missing) and ``registry_dir``.

    Refuses a database that holds tables, and a registry directory that holds
    files, unless ``force``: then the database's public schema and the
    registry's files are replaced.
    """
    started = time.perf_counter()
    problems = verify_backup(directory)
    if problems:
        raise BackupError(f"backup {directory.name} is damaged: {'; '.join(problems)}")
    manifest = Manifest.read(directory)
    if not conninfo_to_dict(database_url).get("dbname"):
        raise BackupError("the target database URL names no database")
    created = ensure_database(database_url)
    if not created and _table_count(database_url) > 0:
        if not force:
            raise BackupError(
                f"{_redact(database_url)} already holds tables;"
                " restore into an empty database or pass --force"
            )
        _empty_schema(database_url)
    restore_registry = registry_dir is not None and manifest.file(REGISTRY_TAR) is not None
    if restore_registry:
        assert registry_dir is not None
        if registry_dir.is_dir() and any(registry_dir.iterdir()):
            if not force:
                raise BackupError(
                    f"the model registry {registry_dir} is not empty; pass --force to replace it"
                )
            shutil.rmtree(registry_dir)
    _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
          f"--dbname={database_url}", str(directory / DUMP)])  # fmt: skip
    if restore_registry:
        assert registry_dir is not None
        registry_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(directory / REGISTRY_TAR) as tar:
            tar.extractall(registry_dir, filter="data")
    report = RestoreReport(
        database=_redact(database_url),
        created_database=created,
        registry=str(registry_dir) if restore_registry else None,
        pending_migrations=pending(database_url),
        duration_s=round(time.perf_counter() - started, 3),
    )
    log.info("backup_restored", backup=manifest.id, database=report.database, seconds=report.duration_s)
    return report
