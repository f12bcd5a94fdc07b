"""Cluster-test fixtures: a fresh PostgreSQL database per test (the store tests' fixture, re-exported).

The server is the session's throwaway `postgres` (`tests.peers.postgres.PostgresInstance`:
initdb in a temp dir on a free port, or `$MAILHOUSE_TEST_PG_URL`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailhouse_proc import MailhouseProcess
from tests.store.conftest import postgres_db_url

__all__ = ["postgres_db_url"]


@pytest.fixture
def smtp_pair(
    tmp_path: Path, postgres_db_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[MailhouseProcess, MailhouseProcess]]:
    """Two started nodes with only an SMTP listener on one fresh database; `extra` (the TOML
    both get) comes from ``@pytest.mark.parametrize("smtp_pair", [EXTRA], indirect=True)``."""
    extra = getattr(request, "param", "")
    nodes = []
    for i in range(2):
        d = tmp_path / f"node{i}"
        d.mkdir()
        nodes.append(MailhouseProcess(d, store_url=postgres_db_url, extra=extra, services=("smtp",)))
    try:
        for n in nodes:
            n.start()
        yield nodes[0], nodes[1]
    finally:
        for n in nodes:
            n.stop()
