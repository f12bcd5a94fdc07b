"""Commits (each a WAL fsync) on the IMAP command path (issue 13 §2: writes are fsync-bound).

APPEND of a small message is one commit; a SELECT whose messages were already claimed as
\\Recent by another session makes none.

The octets of a message the SQLite store keeps inline went in a transaction (and a WAL fsync) of
their own before the transaction of the rows: two group commits per APPEND. They now go in the
rows' transaction (``Store.append_octets``). Counted through a real socket against a server
process, by reading the commit frames of its write-ahead log (https://sqlite.org/fileformat.html
§4.1: a frame whose "database size after commit" is non-zero ends a transaction).
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.imapserver.server_helpers import login, start_server

WAL_HEADER = 32
FRAME_HEADER = 24


def wal_commits(wal: Path) -> int:
    """Commit frames in WAL that belong to its current generation (salts match the header)."""
    data = wal.read_bytes()
    if len(data) < WAL_HEADER:
        return 0
    page = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    n = 0
    for off in range(WAL_HEADER, len(data) - FRAME_HEADER - page + 1, FRAME_HEADER + page):
        head = data[off : off + FRAME_HEADER]
        if head[8:16] != salts:
            break  # a frame left over from an earlier generation of the log
        if struct.unpack(">I", head[4:8])[0]:
            n += 1
    return n


def test_append_of_a_small_message_is_one_commit(tmp_path: Path) -> None:
    mh = start_server(tmp_path, users=("app",))
    try:
        c = login(mh, "app")
        wal = mh.data_dir / "mailhouse.db-wal"
        c.noop()
        msg = b"From: a@example.org\r\nSubject: one commit\r\n\r\n" + b"body line\r\n" * 200
        deltas = []
        for _ in range(3):
            before = wal_commits(wal)
            typ, data = c.append("INBOX", r"(\Seen)", None, msg)
            assert typ == "OK", data
            deltas.append(wal_commits(wal) - before)
        assert deltas == [1, 1, 1]
        c.select("INBOX")
        typ, got = c.fetch("1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK"
        bodies = [item[1] for item in got if isinstance(item, tuple)]
        assert bodies == [msg] * 3
        c.logout()
    finally:
        mh.stop()


def test_select_of_messages_already_claimed_as_recent_commits_nothing(tmp_path: Path) -> None:
    """RFC 3501 §6.3.2 \\Recent: a rev1 SELECT (and a refresh seeing new mail) claims the new
    messages with a write; when another session already claimed them all, a read is enough."""
    mh = start_server(tmp_path, users=("rec",))
    try:
        a, b = login(mh, "rec"), login(mh, "rec")
        wal = mh.data_dir / "mailhouse.db-wal"
        typ, _ = a.append("INBOX", None, None, b"Subject: r\r\n\r\nx\r\n")
        assert typ == "OK"
        typ, got = a.select("INBOX")  # claims message 1 as recent
        assert typ == "OK" and a.untagged_responses.get("RECENT") == [b"1"]
        before = wal_commits(wal)
        typ, _ = b.select("INBOX")
        assert typ == "OK" and b.untagged_responses.get("RECENT") == [b"0"]
        typ, _ = a.select("INBOX")
        assert typ == "OK" and a.untagged_responses.get("RECENT") == [b"0"]
        assert wal_commits(wal) - before == 0
        a.logout()
        b.logout()
    finally:
        mh.stop()
