"""`mailhouse backup DEST`, `mailhouse backup --verify DEST`, `mailhouse restore DEST [--user A [--folder F]]`.

The work is `backup/snapshot.py` (online, incremental backup and verification) and
`backup/restore.py`; this module finds the configured store and prints. See docs/backup.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from mailhouse import config as config_mod
from mailhouse.backup import restore, snapshot
from mailhouse.cli.common import with_store


async def cmd_backup(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    dest = Path(args.dest)
    try:
        if args.verify:
            rep = await asyncio.to_thread(snapshot.verify, dest)
            for p in rep.problems:
                print(f"FAIL {p}")
            print(
                f"{'OK' if rep.ok else 'FAILED'}: {rep.files} files, {rep.bytes} bytes checked"
                + ("" if rep.ok else f", {len(rep.problems)} problems")
            )
            return 0 if rep.ok else 1
        if cfg.store.startswith("sqlite://"):
            db = Path(cfg.store.removeprefix("sqlite://"))
            res = await asyncio.to_thread(
                snapshot.backup_sqlite, db, cfg.data_dir / "blobs", dest, link=args.link
            )
        else:  # PostgreSQL: one REPEATABLE READ snapshot (--link does not apply: the blobs are copied out)
            res = await snapshot.backup_postgres(cfg.store, cfg.data_dir, dest)
    except snapshot.BackupError as e:
        print(f"mailhouse: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{n} {k}" for k, n in res.counts.items())
    print(
        f"backup in {dest}: {counts}; blob files: {res.copied} new ({res.bytes_copied} bytes),"
        f" {res.kept} already there, {res.removed} removed; {res.seconds:.1f} s"
    )
    return 0


async def cmd_restore(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    dest = Path(args.dest)
    if args.folder and not args.user:
        print("mailhouse: --folder needs --user", file=sys.stderr)
        return 2

    async def run(store: Any) -> int:
        if args.user:
            r = await restore.restore_user(dest, store, args.user, args.folder)
            where = f"under {r.parent!r}" if r.parent else "(account recreated)"
            print(
                f"restored {r.address}: {r.mailboxes} folders, {r.messages} messages, {r.bytes} bytes {where}"
            )
        else:
            c = await restore.restore_all(dest, store)
            print(
                f"restored {c.domains} domains, {c.accounts} accounts, {c.aliases} aliases, {c.mailboxes} mailboxes,"
                f" {c.messages} messages, {c.queue} queued messages in {c.seconds:.1f} s"
            )
        return 0

    try:
        return await with_store(cfg, run, create=not args.user)
    except snapshot.BackupError as e:
        print(f"mailhouse: {e}", file=sys.stderr)
        return 1


def register(sub: Any) -> None:
    b = sub.add_parser("backup", help="online, incremental backup of the store into a directory")
    b.add_argument(
        "dest", metavar="DEST", help="backup directory (created; later runs update it incrementally)"
    )
    b.add_argument(
        "--verify", action="store_true", help="check DEST instead: checksums, schema, index ↔ blobs"
    )
    b.add_argument(
        "--link", action="store_true", help="hard-link blob files instead of copying (same file system only)"
    )
    b.set_defaults(fn=cmd_backup)
    r = sub.add_parser(
        "restore", help="restore a backup into an empty store, or one account beside live data"
    )
    r.add_argument("dest", metavar="DEST", help="backup directory made by `mailhouse backup`")
    r.add_argument("--user", metavar="ADDRESS", help="restore only this account, under 'Restored <date>'")
    r.add_argument("--folder", metavar="NAME", help="with --user: only this folder (and its children)")
    r.set_defaults(fn=cmd_restore)
