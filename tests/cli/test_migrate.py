"""`mailhouse migrate [--dry-run]` and the refusal of a store migrated by a newer Mailhouse
(issue 16 §8), on SQLite and on PostgreSQL with a running node (the rolling upgrade)."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg

from mailhouse.store.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from mailhouse.store.sqlite.schema import MIGRATIONS
from tests.cli.test_admin_cli import cfgfile, run
from tests.mailhouse_proc import MailhouseProcess

__all__ = ["cfgfile"]


def _set_version(cfg: Path, v: int) -> None:
    db = sqlite3.connect(cfg.parent / "data" / "mailhouse.db")
    db.execute(f"PRAGMA user_version={v}")
    db.commit()
    db.close()


def test_dry_run_shows_pending_and_changes_nothing(cfgfile: Path) -> None:
    known = len(MIGRATIONS)
    r = run(cfgfile, "migrate", "--dry-run")
    assert r.returncode == 0 and f"schema version {known}; up to date" in r.stdout, r.stdout
    _set_version(cfgfile, known - 1)  # as if this Mailhouse were one migration ahead
    r = run(cfgfile, "migrate", "--dry-run")
    assert r.returncode == 0 and "1 migration(s) pending" in r.stdout and f"-- migration {known}" in r.stdout
    last = MIGRATIONS[-1]
    first_stmt = (last if isinstance(last, str) else last[0]).strip().splitlines()[0]
    assert first_stmt in r.stdout
    db = sqlite3.connect(cfgfile.parent / "data" / "mailhouse.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == known - 1  # untouched
    db.close()


def test_newer_schema_is_refused_everywhere(cfgfile: Path) -> None:
    _set_version(cfgfile, len(MIGRATIONS) + 1)
    for args in (["migrate"], ["user", "list"], ["serve"]):
        r = run(cfgfile, *args)
        assert r.returncode == 1, (args, r.stderr)
        assert "newer than this Mailhouse knows" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_rolling_upgrade_running_node_keeps_serving(postgres_db: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    old = MailhouseProcess(tmp_path / "a", store_url=postgres_db, services=("smtp",))
    old.add_domain("example.org")
    old.add_user("alice@example.org")
    old.start()
    try:
        # a newer Mailhouse on another node migrates: one more (additive) migration
        async def upgrade() -> None:
            c = await asyncpg.connect(postgres_db)
            try:
                await c.execute("CREATE TABLE added_by_a_newer_version(x integer)")
                await c.execute("UPDATE schema_version SET version=$1", len(PG_MIGRATIONS) + 1)
            finally:
                await c.close()

        asyncio.run(upgrade())
        with smtplib.SMTP(*old.addr("smtp"), timeout=30) as s:  # the running old node still delivers
            s.sendmail("x@remote.test", ["alice@example.org"], b"Subject: during the roll\r\n\r\nhi\r\n")
        r = subprocess.run(
            [sys.executable, "-m", "mailhouse", "--config", str(old.cfgfile), "serve"],
            capture_output=True,
            text=True,
            timeout=120,
        )  # ... but the old version does not start again
        assert r.returncode == 1 and "newer than this Mailhouse knows" in r.stderr, r.stderr
    finally:
        old.stop()
