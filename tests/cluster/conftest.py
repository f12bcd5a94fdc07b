"""Cluster-test fixtures: a fresh PostgreSQL database per test (the store tests' fixture, re-exported).

The server is the session's throwaway `postgres` (`tests.peers.postgres.PostgresInstance`:
initdb in a temp dir on a free port, or `$MAILHOUSE_TEST_PG_URL`).
"""

from __future__ import annotations

from tests.store.conftest import postgres_db_url

__all__ = ["postgres_db_url"]
