"""The commands: `mailhouse backup`, `backup --verify`, `restore` (refusal, --user), `export`,
run as processes against a configuration (no server needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailhouse import config as config_mod
from mailhouse.store import open_store
from mailhouse.store.api import NewMessage
from tests.backup.conftest import BIG, msg
from tests.mailhouse_proc import MailhouseProcess

pytestmark = pytest.mark.slow  # seven `mailhouse` processes


async def _fill(mh: MailhouseProcess) -> None:
    cfg = config_mod.load(str(mh.cfgfile))
    s = open_store(cfg.store, cfg.data_dir)
    await s.open()
    try:
        acc = await s.get_account("alice@example.org")
        assert acc is not None
        inbox = await s.get_mailbox(acc.id, "INBOX")
        assert inbox is not None
        await s.append_octets(
            [(msg(1), NewMessage(inbox.id, "", 0)), (msg(2, BIG), NewMessage(inbox.id, "", 0))]
        )
    finally:
        await s.close()


def test_backup_verify_restore_export_commands(tmp_path: Path) -> None:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", services=())
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    asyncio.run(_fill(mh))
    dest = tmp_path / "bk"
    out = mh.cli("backup", str(dest)).stdout
    assert "2 messages" in out and "blob files: 1 new" in out
    assert "blob files: 0 new" in mh.cli("backup", str(dest)).stdout
    assert mh.cli("backup", "--verify", str(dest)).stdout.startswith("OK:")

    r = mh.cli("restore", str(dest), check=False)
    assert r.returncode == 1 and "not empty" in r.stderr  # the live store is not empty
    r = mh.cli("restore", "--user", "alice@example.org", str(dest))
    assert "2 messages" in r.stdout and "Restored " in r.stdout

    r = mh.cli("export", "mbox", str(tmp_path / "mbox"))
    assert "exported 1 accounts" in r.stdout
    inbox = (tmp_path / "mbox" / "alice@example.org" / "INBOX.mbox").read_bytes()
    assert inbox.count(b"\nFrom MAILER-DAEMON ") + inbox.startswith(b"From ") == 2

    blob = next(p for p in (dest / "blobs").rglob("*") if p.is_file())
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    r = mh.cli("backup", "--verify", str(dest), check=False)
    assert r.returncode == 1 and "FAIL blobs/" in r.stdout and "SHA-256" in r.stdout
