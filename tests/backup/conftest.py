"""Backup-test fixtures: the per-test PostgreSQL database of tests/store (reused, not copied), and
`live`: a SQLite store with two accounts, inline and file blobs, flags, keywords and a sub-folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.store.api import NewMessage
from mailhouse.store.sqlite.backend import SqliteStore
from tests.store.conftest import postgres_db_url

__all__ = ["BIG", "live", "msg", "postgres_db_url"]

BIG = 600 * 1024  # above INLINE_BLOB_MAX: a blob file


def msg(i: int, size: int = 0) -> bytes:
    body = b"x" * max(size - 100, 0) + b"\r\n"  # mail ends with a line break (SMTP DATA makes it so)
    return b"Message-ID: <m%d@example.org>\r\nSubject: %d\r\n\r\nbody %d\r\n" % (i, i, i) + body


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "live" / "mh.db", tmp_path / "live" / "blobs")
    (tmp_path / "live").mkdir()
    await s.open()
    await s.add_domain("example.org")
    for addr in ("alice@example.org", "bob@example.org"):
        acc = await s.add_account(addr, "hash")
        inbox = await s.get_mailbox(acc.id, "INBOX")
        assert inbox is not None
        await s.append_octets(
            [
                (msg(1), NewMessage(inbox.id, "", 0, frozenset({"\\Seen", "$Label1"}), 1_700_000_000.0)),
                (msg(2, BIG), NewMessage(inbox.id, "", 0, frozenset({"\\Flagged"}), 1_700_000_100.0)),
            ]
        )
        sub = await s.create_mailbox(acc.id, "Archive/2025")
        await s.append_octets(
            [(msg(3), NewMessage(sub.id, "", 0, frozenset({"\\Answered"}), 1_600_000_000.0))]
        )
    try:
        yield s
    finally:
        await s.close()
