"""`mailhouse export maildir|mbox DIR [USER…]`: mail out as Dovecot-compatible Maildir++ or mboxrd
(`backup/export.py` does the work; this module opens the store and prints the report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailhouse import config as config_mod
from mailhouse.backup.export import Format, export
from mailhouse.cli.common import with_store


async def cmd_export(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        res = await export(store, Format(args.format), Path(args.dir), args.users)
        for p in res.problems:
            print(f"mailhouse: not exported: {p}", file=sys.stderr)
        print(
            f"exported {res.accounts} accounts, {res.folders} folders, {res.messages} messages, {res.bytes} bytes"
            f" as {args.format} into {args.dir}" + (f"; {len(res.problems)} problems" if res.problems else "")
        )
        return 1 if res.problems else 0

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    e = sub.add_parser("export", help="write accounts' mail as Maildir (Dovecot layout) or mbox files")
    e.add_argument("format", choices=[f.value for f in Format])
    e.add_argument(
        "dir", metavar="DIR", help="where to write (maildir: DIR/<domain>/<local>; mbox: DIR/<address>)"
    )
    e.add_argument("users", nargs="*", metavar="USER", help="accounts to export (default: all)")
    e.set_defaults(fn=cmd_export)
