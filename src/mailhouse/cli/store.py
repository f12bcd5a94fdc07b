"""`mailhouse store copy|verify --from URL --to URL`: move an installation between backends.

`copy` copies everything (directory, mailboxes with UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ,
messages with UIDs/flags/dates/modseqs, blobs, subscriptions, metadata, queue) from one
store into an empty one — SQLite → PostgreSQL or back — with a progress bar on stderr,
then prints a verification report and exits 0 only if every item is identical.
`verify` compares two stores without copying. Stop every node using the source first.

Blob locations: a `sqlite:///DIR/mailhouse.db` store keeps its message files in `DIR/blobs`
(as `mailhouse serve` does with the default `[store] url`); `--from-data-dir` /
`--to-data-dir` say otherwise. See docs/scale-out.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mailhouse import config as config_mod
from mailhouse.cli import main as cli_main
from mailhouse.store.copy import data_dir_for, run_copy, run_verify


def _dirs(args: argparse.Namespace, cfg: config_mod.Config) -> tuple[Path, Path]:
    def pick(url: str, explicit: str | None) -> Path:
        if explicit:
            return Path(explicit)
        if url == cfg.store:
            return cfg.data_dir
        return data_dir_for(url, cfg.data_dir)

    return pick(args.src, args.from_data_dir), pick(args.dst, args.to_data_dir)


async def cmd_store(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    src_dir, dst_dir = _dirs(args, cfg)
    if args.action == "copy":
        _, rep = await run_copy(
            args.src, args.dst, src_dir, dst_dir, progress=not args.no_progress, verify=not args.no_verify
        )
        return 0 if rep is None or rep.ok else 1
    rep = await run_verify(args.src, args.dst, src_dir, dst_dir)
    return 0 if rep.ok else 1


def register(sub: Any) -> None:
    s = sub.add_parser("store", help="copy or compare whole stores (moving to PostgreSQL and back)")
    s.add_argument("action", choices=["copy", "verify"])
    s.add_argument(
        "--from", dest="src", required=True, metavar="URL", help="source store: sqlite:///… or postgresql://…"
    )
    s.add_argument(
        "--to", dest="dst", required=True, metavar="URL", help="destination store (must be empty for copy)"
    )
    s.add_argument("--from-data-dir", help="data_dir of the source (its blobs/ for SQLite)")
    s.add_argument("--to-data-dir", help="data_dir of the destination (its blobs/ for SQLite)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    s.add_argument("--no-verify", action="store_true", help="copy without the verification pass")
    s.set_defaults(fn=cmd_store)


cli_main._extra_commands.append(register)
