"""Fixtures for the import tests: a store on both backends with alice@example.org."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.store import open_store
from mailhouse.store.store import MailStore
from tests.store.conftest import postgres_db_url  # noqa: F401  (the fixture)

ALICE = "alice@example.org"


@pytest.fixture
async def store(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MailStore]:
    url = (
        f"sqlite:///{tmp_path / 'mh.db'}"
        if store_backend == "sqlite"
        else request.getfixturevalue("postgres_db_url")
    )
    async with alice_store(url, tmp_path / "data") as s:
        yield s


@contextlib.asynccontextmanager
async def alice_store(url: str, data_dir: Path) -> AsyncIterator[MailStore]:
    """A new store at URL with the domain example.org and the account ALICE."""
    s = open_store(url, data_dir)
    await s.open()
    await s.add_domain("example.org")
    await s.add_account(ALICE, "x")
    try:
        yield s
    finally:
        await s.close()
