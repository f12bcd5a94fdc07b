"""Backup while mail flows (SQLite and PostgreSQL stores): `mailhouse backup` against a running `mailhouse serve` in the middle of a
2,000-message SMTP burst, then restore into an empty store: every message acknowledged (250)
before the backup started is present exactly once, none twice; `backup --verify` passes; a second
backup copies only the blob files that are new (here the big messages sent after the first)."""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from mailhouse.backup import restore
from mailhouse.store.sqlite.backend import SqliteStore
from tests.mailhouse_proc import MailhouseProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TOTAL = 2000
SENDERS = 4
BIG_EVERY = 100  # every 100th message is above the inline limit: a blob file


def _send(mh: MailhouseProcess, first: int, acked: dict[str, float], lock: threading.Lock) -> None:
    host, port = mh.addr("smtp")
    with smtplib.SMTP(host, port, timeout=60) as s:
        s.ehlo("client.example.net")
        for i in range(first, TOTAL, SENDERS):
            body = "x" * (600_000 if i % BIG_EVERY == 0 else 50)
            msg = f"From: a@example.net\r\nTo: bob@example.org\r\nMessage-ID: <burst{i}@example.net>\r\n"
            msg += f"Subject: burst {i}\r\n\r\n{body}\r\n"
            s.sendmail("a@example.net", ["bob@example.org"], msg)  # raises unless 250
            with lock:
                acked[f"<burst{i}@example.net>"] = time.monotonic()


async def _restored_ids(dest: Path, tmp: Path) -> list[str]:
    target = SqliteStore(tmp / "restored.db", tmp / "restored-blobs")
    await target.open()
    try:
        await restore.restore_all(dest, target)
        acc = await target.get_account("bob@example.org")
        assert acc is not None
        inbox = await target.get_mailbox(acc.id, "INBOX")
        assert inbox is not None
        ids = []
        for m in await target.list_messages(inbox.id):
            head = await target.blobs.read_range(m.blob_key, 0, 4096)
            ids.append(str(BytesHeaderParser().parsebytes(head)["Message-ID"]))
        return ids
    finally:
        await target.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_backup_during_smtp_burst_then_restore(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "mh").mkdir()
    url = request.getfixturevalue("postgres_db_url") if backend == "postgres" else None
    mh = MailhouseProcess(
        tmp_path / "mh", services=("smtp",), extra="[server]\nsmtp_pregreet_wait = 0\n", store_url=url
    )
    mh.start()
    dest = tmp_path / "backup"
    try:
        mh.add_domain("example.org")
        mh.add_user("bob@example.org")
        acked: dict[str, float] = {}
        lock = threading.Lock()
        senders = [threading.Thread(target=_send, args=(mh, k, acked, lock)) for k in range(SENDERS)]
        for t in senders:
            t.start()
        while len(acked) < TOTAL // 4 and any(t.is_alive() for t in senders):
            time.sleep(0.05)
        started = time.monotonic()  # the snapshot point is after this
        out = mh.cli("backup", str(dest)).stdout
        for t in senders:
            t.join()
        assert len(acked) == TOTAL, "every message of the burst was acknowledged"
        assert mh.cli("backup", "--verify", str(dest)).returncode == 0
        before = {k for k, at in acked.items() if at < started}
        assert before  # the backup ran during the burst
        ids = asyncio.run(_restored_ids(dest, tmp_path))
        assert len(ids) == len(set(ids)), "no message twice"
        assert before <= set(ids), f"missing: {sorted(before - set(ids))[:5]}"
        assert set(ids) <= set(acked)
        print(f"first backup: {out.strip()} ({len(before)} acked before it, {len(ids)} in it)")

        # a second backup (quiet now) copies only the blob files of the big messages it lacks
        in_first = sum(1 for i in ids if int(i[6:].split("@")[0]) % BIG_EVERY == 0)
        second = mh.cli("backup", str(dest)).stdout
        assert f"blob files: {TOTAL // BIG_EVERY - in_first} new" in second
        assert f"{in_first} already there" in second
        assert mh.cli("backup", "--verify", str(dest)).returncode == 0
    finally:
        mh.stop()
