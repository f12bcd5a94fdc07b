"""`mailhouse index backfill|rebuild [USER]` (issue 13 §4), run as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from mailhouse.message import fts_text
from mailhouse.store import open_store
from mailhouse.store.api import FtsResult, NewMessage

URL_DB = "mailhouse.db"


def run(cfgfile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAILHOUSE_CONFIG=str(cfgfile))
    return subprocess.run(
        [sys.executable, "-m", "mailhouse", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _search(data: Path, word: str) -> FtsResult:
    async def go() -> FtsResult:
        s = open_store(f"sqlite:///{data / URL_DB}", data)
        await s.open()
        try:
            acc = await s.get_account("alice@example.org")
            assert acc is not None
            mb = await s.get_mailbox(acc.id, "INBOX")
            assert mb is not None
            q = fts_text.query_for("BODY", word)
            assert q is not None
            return await s.search_index(mb.id, [q])
        finally:
            await s.close()

    return asyncio.run(go())


def test_backfill_and_rebuild(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "mailhouse.toml"
    cfg.write_text(f'hostname = "mail.example.org"\ndata_dir = "{data}"\n')
    assert run(cfg, "setup").returncode == 0
    assert run(cfg, "domain", "add", "example.org").returncode == 0

    async def fill() -> None:  # mail stored before the index existed (no indexer)
        s = open_store(f"sqlite:///{data / URL_DB}", data)
        await s.open()
        try:
            acc = await s.add_account("alice@example.org", "x")
            mb = await s.get_mailbox(acc.id, "INBOX")
            assert mb is not None
            for i in range(30):
                body = b"the swordfish\r\n" if i % 3 == 0 else b"nothing\r\n"
                await s.deliver(b"Subject: m%d\r\n\r\n" % i + body, [NewMessage(mb.id, "", 0)])
        finally:
            await s.close()

    asyncio.run(fill())
    before = _search(data, "swordfish")
    assert before.hits == [set()] and len(before.unindexed) == 30
    r = run(cfg, "index", "backfill", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert "indexed 30" in r.stdout
    assert "30/30 messages" in r.stderr  # the progress bar
    after = _search(data, "swordfish")
    assert after.hits == [set(range(1, 31, 3))] and after.unindexed == set()
    r = run(cfg, "index", "rebuild", "alice@example.org", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "dropped 30" in r.stdout and "indexed 30" in r.stdout
    assert _search(data, "swordfish").hits == [set(range(1, 31, 3))]
    assert run(cfg, "index", "rebuild", "nobody@example.org").returncode == 1
