"""Store-test fixtures: a fresh, empty PostgreSQL database per test.

The server is the session-wide throwaway `postgres` fixture of `tests.peers.fixtures`
(`PostgresInstance`: initdb in a temp dir, or `$MAILHOUSE_TEST_PG_URL`); each test gets
its own `CREATE DATABASE t_<random>`, dropped (WITH FORCE) afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.peers.postgres import PostgresInstance


@pytest.fixture
def postgres_db_url(postgres: PostgresInstance) -> Iterator[str]:
    name = f"t_{secrets.token_hex(6)}"
    url = postgres.create_database(name)
    try:
        yield url
    finally:
        postgres.drop_database(name)
