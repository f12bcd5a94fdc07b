"""`mailhouse import maildir PATH USER`, `import mbox FILE USER [--folder NAME]`,
`import imap URL USER [--password-stdin]` (issue 18 §1): the work is `mailhouse.transfer`.

A live progress bar (rich: messages, octets, ETA) goes to stderr, the final report (imported,
skipped, failed with per-message reasons) to stdout. Messages are stored without their
full-text index documents (extracting them in the append path cost 95 % of an import's time)
and indexed afterwards by `cli.index.backfill` in worker processes (``--jobs``), or later with
`mailhouse index backfill` after ``--no-index``; until then a search scans them (`store/fts.py`:
results never depend on how far indexing got). Exit status 0 when nothing failed, 1 when
some message failed (the rest is imported; running again retries only those), 2 for usage.
Works while `mailhouse serve` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.cli.index import backfill
from mailhouse.cli.store import Progress as PlainProgress
from mailhouse.store.api import StoreError
from mailhouse.transfer.imapsource import ImapSource, parse_url, tls_context
from mailhouse.transfer.importer import Importer, Source, SourceError
from mailhouse.transfer.maildir import MaildirSource
from mailhouse.transfer.mbox import MboxSource


class RichProgress:
    """`importer.ProgressSink` as a rich bar over the octets (ETA, speed), messages counted beside."""

    def __init__(self, enabled: bool) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self.task: TaskID = self.bar.add_task("", total=0)
        self.messages = self.total = 0

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def add_total(self, messages: int, octets: int) -> None:
        self.total += messages
        self.bar.update(self.task, total=(self.bar.tasks[0].total or 0) + octets, description=self._text())

    def advance(self, messages: int, octets: int) -> None:
        self.messages += messages
        self.bar.update(self.task, advance=octets, description=self._text())

    def _text(self) -> str:
        return f"{self.messages}/{self.total} messages"


def _source(args: argparse.Namespace) -> Source:
    if args.kind == "maildir":
        return MaildirSource(args.path)
    if args.kind == "mbox":
        return MboxSource(args.path)
    url = parse_url(args.path, args.source_user)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"Password of {url.user} at {url.host}: ")
    ctx = tls_context(args.ca, args.insecure)
    return ImapSource(url, password, ctx, plaintext_ok=args.insecure)


async def cmd_import(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    try:
        source = _source(args)
    except SourceError as e:
        print(f"mailhouse: {e}", file=sys.stderr)
        return 2

    async def run(store: Any) -> int:
        store.indexer = None  # indexed in one pass afterwards (the module docstring)
        with RichProgress(enabled=not args.no_progress and sys.stderr.isatty()) as bar:
            imp = Importer(
                store,
                source,
                args.user,
                max_size=cfg.max_message_size,
                dry_run=args.dry_run,
                progress=bar,
                target_folder=getattr(args, "folder", None),
                keep_uids=not args.new_uids,
            )
            try:
                report = await imp.run()
            except SourceError as e:
                print(f"mailhouse: {e}", file=sys.stderr)
                return 1
            except StoreError as e:
                print(f"mailhouse: {e}", file=sys.stderr)
                return 1
        for line in report.lines(args.dry_run):
            print(line)
        if report.imported and not args.dry_run and not args.no_index:
            show = not args.no_progress and sys.stderr.isatty()
            n = await backfill(store, PlainProgress(0, 0, enabled=show), args.jobs)
            print(f"indexed {n} message(s) for search")
        return 1 if report.failed else 0

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="import mail: maildir PATH USER, mbox FILE USER, imap URL USER")
    kinds = p.add_subparsers(dest="kind", required=True)
    specs = (
        ("maildir", "PATH", "a Maildir (Maildir++ or Dovecot LAYOUT=fs): its folders, flags, keywords, UIDs"),
        ("mbox", "FILE", "an mbox file (mboxrd/mboxo) into one folder"),
        ("imap", "URL", "every folder of an account on another IMAP server (imaps://USER@HOST, imap://…)"),
    )
    for kind, meta, text in specs:
        k = kinds.add_parser(kind, help=text)
        k.add_argument("path", metavar=meta)
        k.add_argument("user", metavar="USER", help="the Mailhouse account to import into")
        k.add_argument("--dry-run", action="store_true", help="read and check everything, store nothing")
        k.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        k.add_argument(
            "--no-index", action="store_true", help="leave search indexing to `mailhouse index backfill`"
        )
        k.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="indexing processes")
        k.add_argument(
            "--new-uids", action="store_true", help="give new UIDs even where the source's could be kept"
        )
        if kind == "mbox":
            k.add_argument("--folder", default="INBOX", help="the folder to import into (default INBOX)")
        if kind == "imap":
            k.add_argument(
                "--password-stdin", action="store_true", help="read the source password from stdin"
            )
            k.add_argument("--source-user", help="the login at the source (else the URL's user part)")
            k.add_argument("--ca", help="a CA certificate file to verify the server with (a private CA)")
            k.add_argument(
                "--insecure",
                action="store_true",
                help="do not verify the server's certificate; allow plaintext if it offers no STARTTLS",
            )
        k.set_defaults(fn=cmd_import)
