"""The `wealthalloc` command fails with one clear line, never a traceback wall."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "wealthalloc.cli"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WEALTHALLOC_")}
    return subprocess.run(
        [*CLI, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("migrate", "data", "demo", "users", "serve", "stop", "doctor"):
        assert command in result.stdout


def test_a_malformed_database_url_is_one_line(tmp_path: Path) -> None:
    result = run_cli("migrate", env={"WEALTHALLOC_DATABASE_URL": "mysql://root@localhost/x"}, cwd=tmp_path)
    assert_one_line_error(result, "WEALTHALLOC_DATABASE_URL", "postgresql://")


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "migrate", env={"WEALTHALLOC_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}, cwd=tmp_path
    )
    assert_one_line_error(result, "127.0.0.1:1", "does not answer")


def test_migrate_twice_changes_nothing_the_second_time(empty_database_url: str, tmp_path: Path) -> None:
    env = {"WEALTHALLOC_DATABASE_URL": empty_database_url}
    first = run_cli("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout
    second = run_cli("migrate", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "schema up to date" in second.stdout


def test_serve_refuses_a_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "serve",
            env={"WEALTHALLOC_HTTP_PORT": str(port), "WEALTHALLOC_DATA_DIR": str(tmp_path)},
            cwd=tmp_path,
        )
    assert_one_line_error(result, f"port {port}", "in use")
    assert not (tmp_path / "runtime.json").exists()


def test_serve_without_embedded_services_names_the_dead_redis(tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        env={
            "WEALTHALLOC_EMBEDDED_SERVICES": "false",
            "WEALTHALLOC_REDIS_URL": "redis://127.0.0.1:1/0",
            "WEALTHALLOC_DATA_DIR": str(tmp_path),
            "WEALTHALLOC_HTTP_PORT": "1",
        },
        cwd=tmp_path,
    )
    assert_one_line_error(result, "Redis at redis://127.0.0.1:1/0", "does not answer")


def test_doctor_reports_problems_with_exit_1(tmp_path: Path) -> None:
    result = run_cli(
        "doctor",
        env={
            "WEALTHALLOC_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
            "WEALTHALLOC_DATA_DIR": str(tmp_path),
            "WEALTHALLOC_HTTP_PORT": "1",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "postgres" in result.stdout
    assert "Traceback" not in result.stderr


def test_create_admin_applies_the_password_policy(empty_database_url: str, tmp_path: Path) -> None:
    env = {"WEALTHALLOC_DATABASE_URL": empty_database_url}
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    weak = run_cli(
        "users", "create-admin", "--email", "ops@example.com", "--password", "password123", env=env
    )
    assert_one_line_error(weak, "well-known")
    strong = run_cli(
        "users",
        "create-admin",
        "--email",
        "ops@example.com",
        "--password",
        "a sturdy ops passphrase",
        env=env,
    )
    assert strong.returncode == 0, strong.stderr


def test_audit_verify_passes_an_intact_chain_and_names_a_tampered_row(
    empty_database_url: str, tmp_path: Path
) -> None:
    import psycopg
    from psycopg.rows import dict_row

    from wealthalloc.storage.audit import append_audit_sync, new_entry

    env = {"WEALTHALLOC_DATABASE_URL": empty_database_url}
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        for n in range(5):
            append_audit_sync(conn, new_entry("test.action", details={"n": n, "amount": "12.50"}))
    intact = run_cli("audit", "verify", env=env, cwd=tmp_path)
    assert intact.returncode == 0, intact.stderr
    assert "intact: 5 entries" in intact.stdout

    with psycopg.connect(empty_database_url) as conn:
        conn.execute(
            """UPDATE audit_log SET details = '{"n": 2, "amount": "1250.00"}' WHERE details->>'n' = '2'"""
        )
    tampered = run_cli("audit", "verify", env=env, cwd=tmp_path)
    assert tampered.returncode == 1
    assert "altered" in tampered.stderr and "broken" in tampered.stderr


def test_events_replay_publishes_the_outbox_again_from_a_sequence(
    empty_database_url: str, tmp_path: Path
) -> None:
    import json
    import uuid

    import psycopg
    import redis

    redis_url = "redis://127.0.0.1:6379/11"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = {"WEALTHALLOC_DATABASE_URL": empty_database_url, "WEALTHALLOC_REDIS_URL": redis_url}
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    with psycopg.connect(empty_database_url) as conn:
        for n in range(6):
            conn.execute(
                "INSERT INTO events (topic, event_type, user_id, payload)"
                " VALUES ('trades.executed', 'trade', %s, %s)",
                (uuid.uuid4(), json.dumps({"n": n})),
            )
        third = conn.execute("SELECT sequence FROM events ORDER BY sequence OFFSET 2 LIMIT 1").fetchone()
    assert third is not None
    try:
        result = run_cli("events", "replay", "--from", str(third[0]), env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "replayed 4 event(s)" in result.stdout
        assert client.xlen("stream:trades.executed") == 4
    finally:
        client.flushdb()
        client.close()
