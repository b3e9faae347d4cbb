"""`wealthalloc backup`: a checksummed copy of the database and model registry that restores
into a fresh database, is refused over live data, and is caught when it has been damaged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import create_database, drop_database
from tests.integration.test_cli import assert_one_line_error, run_cli
from wealthalloc.storage.migrate import migrate


@pytest.fixture
def source(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated database with one user, and a data directory whose registry holds one file."""
    url = create_database("wealthalloc_backup_source")
    migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO users (email, password_hash) VALUES ('kept@example.com', 'x')")
    (tmp_path / "models" / "versions" / "v1").mkdir(parents=True)
    (tmp_path / "models" / "versions" / "v1" / "weights.bin").write_bytes(b"\x00weights")
    try:
        yield {
            "WEALTHALLOC_DATABASE_URL": url,
            "WEALTHALLOC_DATA_DIR": str(tmp_path),
            "WEALTHALLOC_EMBEDDED_SERVICES": "false",
        }
    finally:
        drop_database(url)


@pytest.fixture
def target_url() -> Iterator[str]:
    """The URL of a database that does not exist yet (dropped after the test if a restore made it)."""
    url = create_database("wealthalloc_backup_target")
    drop_database(url)
    try:
        yield url
    finally:
        drop_database(url)


def _only_backup(data_dir: Path) -> Path:
    (backup,) = [p for p in (data_dir / "backups").iterdir() if not p.name.startswith(".")]
    return backup


def test_a_backup_records_schema_version_sizes_and_checksums_and_verifies(source: dict[str, str]) -> None:
    created = run_cli("backup", "create", env=source)
    assert created.returncode == 0, created.stderr
    backup = _only_backup(Path(source["WEALTHALLOC_DATA_DIR"]))
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["schema_version"] >= 16 and manifest["created_at"]
    assert "wealthalloc_backup_source" in manifest["database"]
    assert {f["name"] for f in manifest["files"]} == {"database.dump", "models.tar"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"])
    listed = run_cli("backup", "list", env=source)
    assert backup.name in listed.stdout and f"schema {manifest['schema_version']}" in listed.stdout
    verified = run_cli("backup", "verify", backup.name, env=source)
    assert verified.returncode == 0 and "verified" in verified.stdout


def test_a_damaged_backup_fails_verify_and_is_never_restored(source: dict[str, str], target_url: str) -> None:
    assert run_cli("backup", "create", env=source).returncode == 0
    backup = _only_backup(Path(source["WEALTHALLOC_DATA_DIR"]))
    dump = backup / "database.dump"
    dump.write_bytes(dump.read_bytes()[:-1] + b"!")
    verified = run_cli("backup", "verify", env=source)
    assert_one_line_error(verified, backup.name, "damaged", "database.dump does not match its sha256")
    restored = run_cli("backup", "restore", "--database-url", target_url, env=source)
    assert_one_line_error(restored, "database.dump does not match its sha256")


def test_restore_creates_the_database_and_brings_back_rows_and_registry(
    source: dict[str, str], target_url: str, tmp_path: Path
) -> None:
    assert run_cli("backup", "create", env=source).returncode == 0
    registry = tmp_path / "restored-models"
    restored = run_cli(
        "backup",
        "restore",
        "latest",
        "--database-url",
        target_url,
        "--registry-dir",
        str(registry),
        env=source,
    )
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(target_url) as conn:
        emails = [row[0] for row in conn.execute("SELECT email FROM users")]
    assert emails == ["kept@example.com"]
    assert (registry / "versions" / "v1" / "weights.bin").read_bytes() == b"\x00weights"
    audit = run_cli("audit", "verify", env={**source, "WEALTHALLOC_DATABASE_URL": target_url})
    assert audit.returncode == 0, audit.stderr


def test_restore_refuses_a_database_that_holds_tables_unless_forced(source: dict[str, str]) -> None:
    assert run_cli("backup", "create", env=source).returncode == 0
    with psycopg.connect(source["WEALTHALLOC_DATABASE_URL"]) as conn:
        conn.execute("INSERT INTO users (email, password_hash) VALUES ('after@example.com', 'x')")
    no_registry = ["--registry-dir", str(Path(source["WEALTHALLOC_DATA_DIR"]) / "models")]
    refused = run_cli("backup", "restore", *no_registry, env=source)
    assert_one_line_error(refused, "already holds tables", "--force")
    forced = run_cli("backup", "restore", *no_registry, "--force", env=source)
    assert forced.returncode == 0, forced.stderr
    with psycopg.connect(source["WEALTHALLOC_DATABASE_URL"]) as conn:
        emails = sorted(row[0] for row in conn.execute("SELECT email FROM users"))
    assert emails == ["kept@example.com"]
