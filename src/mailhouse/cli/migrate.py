"""`mailhouse migrate [--dry-run]`: bring the store's schema up to this version, or show what
would change (issue 16 §8).

`serve` migrates on start as well; this command lets an operator see the pending changes
first (`--dry-run` prints each migration's statements and touches nothing), and apply them
while the servers still run the old version (migrations only add tables, columns and indexes,
so running nodes keep working; see README "Running several nodes" for the rolling upgrade).
A store migrated by a newer Mailhouse is refused with `SchemaTooNew`, here and in `serve`.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.store import schema_versions
from mailhouse.store.api import SchemaTooNew


async def cmd_migrate(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    current, migrations = await schema_versions(cfg.store)
    known = len(migrations)
    at = current or 0
    if at > known:
        raise SchemaTooNew(at, known)
    pending = list(range(at, known))
    where = "no store yet" if current is None else f"schema version {at}"
    if not pending:
        print(f"{where}; up to date (this Mailhouse knows {known} migrations)")
        return 0
    print(f"{where}; {len(pending)} migration(s) pending, to version {known}")
    if args.dry_run:
        for i in pending:
            print(f"\n-- migration {i + 1}")
            print(migrations[i].strip())
        return 0

    async def run(store: Any) -> int:  # opening the store applies them, as serve does
        print(f"migrated to schema version {known}")
        return 0

    return await with_store(cfg, run, create=True)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "migrate", help="apply pending schema migrations (--dry-run: show them, change nothing)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the pending migrations and stop")
    p.set_defaults(fn=cmd_migrate)
