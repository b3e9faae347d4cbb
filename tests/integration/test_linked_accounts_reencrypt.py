"""`wealthalloc linked-accounts reencrypt`: after a new key joins the ring, every account number is
sealed again under it (the old key can then be dropped), with a progress bar and one clear line
for numbers no key opens."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import create_database, drop_database
from tests.integration.test_cli import assert_one_line_error, run_cli
from wealthalloc.security.encryption import KeyRing, Sealed, new_key
from wealthalloc.storage import linked_accounts as store

OLD, NEW, INDEX = new_key(), new_key(), new_key()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A migrated database of this test alone: the command walks every linked account there is."""
    from wealthalloc.storage.migrate import migrate

    url = create_database("wealthalloc_rotate")
    try:
        migrate(url)
        yield url
    finally:
        drop_database(url)


def person_with_accounts(database_url: str, ring: KeyRing, numbers: list[str]) -> uuid.UUID:
    """A person whose portfolios each have one linked account, sealed by ``ring``."""

    async def make() -> uuid.UUID:
        async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
            cur = await conn.execute(
                "INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
                (f"rotate-{uuid.uuid4().hex[:8]}@example.com",),
            )
            user_id: uuid.UUID = (await cur.fetchone())["id"]  # type: ignore[index]
            for number in numbers:
                cur = await conn.execute(
                    "INSERT INTO portfolios (user_id, name) VALUES (%s, %s) RETURNING id", (user_id, number)
                )
                portfolio_id = (await cur.fetchone())["id"]  # type: ignore[index]
                await store.insert_account(
                    conn,
                    user_id=user_id,
                    provider="ibkr",
                    name="Brokerage",
                    portfolio_id=portfolio_id,
                    masked="****" + number[-4:],
                    sealed=ring.encrypt(number, owner=user_id),
                    index=ring.blind_index(number, provider="ibkr"),
                )
            await conn.commit()
            return user_id

    return asyncio.run(make())


def sealed_of(database_url: str, user_id: uuid.UUID) -> list[Sealed]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT account_number_key_id, account_number_sealed FROM external_accounts
               WHERE user_id = %s ORDER BY name, created_date""",
            (user_id,),
        ).fetchall()
    return [Sealed(key_id, bytes(blob)) for key_id, blob in rows]


def env(database_url: str, **keys: str) -> dict[str, str]:
    return {
        "WEALTHALLOC_DATABASE_URL": database_url,
        "WEALTHALLOC_LINKED_ACCOUNT_KEYS": json.dumps(keys),
        "WEALTHALLOC_LINKED_ACCOUNT_INDEX_KEY": INDEX,
    }


def test_every_number_moves_to_the_newest_key_once_and_opens_with_it_alone(
    database_url: str, tmp_path: Path
) -> None:
    numbers = ["U7000001", "U7000002", "DU7000003"]
    user_id = person_with_accounts(database_url, KeyRing({"k1": OLD}, INDEX), numbers)

    first = run_cli(
        "linked-accounts", "reencrypt", "--batch", "2", env=env(database_url, k1=OLD, k2=NEW), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert "moved to key k2" in first.stdout and "re-encrypting" in first.stderr  # the progress bar

    sealed = sealed_of(database_url, user_id)
    assert {s.key_id for s in sealed} == {"k2"}
    newest_only = KeyRing({"k2": NEW}, INDEX)
    assert sorted(newest_only.decrypt(s, owner=user_id) for s in sealed) == sorted(numbers)

    again = run_cli("linked-accounts", "reencrypt", env=env(database_url, k1=OLD, k2=NEW), cwd=tmp_path)
    assert again.returncode == 0 and "0 account number(s) moved" in again.stdout


def test_numbers_no_key_opens_are_left_alone_and_named_in_one_line(database_url: str, tmp_path: Path) -> None:
    lost = person_with_accounts(database_url, KeyRing({"gone": new_key()}, INDEX), ["U7100001"])
    kept = person_with_accounts(database_url, KeyRing({"k1": OLD}, INDEX), ["U7100002"])

    result = run_cli(
        "linked-accounts", "reencrypt", "-q", env=env(database_url, k1=OLD, k2=NEW), cwd=tmp_path
    )
    assert_one_line_error(result, "open with no key of the ring")
    assert [s.key_id for s in sealed_of(database_url, lost)] == ["gone"]
    assert [s.key_id for s in sealed_of(database_url, kept)] == ["k2"]


def test_without_a_key_ring_the_command_says_what_to_set(database_url: str, tmp_path: Path) -> None:
    result = run_cli(
        "linked-accounts", "reencrypt", env={"WEALTHALLOC_DATABASE_URL": database_url}, cwd=tmp_path
    )
    assert_one_line_error(result, "WEALTHALLOC_LINKED_ACCOUNT_KEYS")
