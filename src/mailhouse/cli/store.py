"""`mailhouse store copy|verify --from URL --to URL`: move an installation between backends.

`copy` copies everything (directory, mailboxes with UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ,
messages with UIDs/flags/dates/modseqs, blobs, subscriptions, metadata, queue) from one
store into an empty one — SQLite → PostgreSQL or back — with a progress bar on stderr,
then prints a verification report and exits 0 only if every item is identical.
`verify` compares two stores without copying. Stop every node using the source first.
The copying is `store/copy.py`, the comparison `store/verify.py`; this module prints.

Blob locations: a `sqlite:///DIR/mailhouse.db` store keeps its message files in `DIR/blobs`
(as `mailhouse serve` does with the default `[store] url`); `--from-data-dir` /
`--to-data-dir` say otherwise. See docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mailhouse import config as config_mod
from mailhouse.store.copy import CopyResult, copy_store, open_pair
from mailhouse.store.verify import Report, verify_store


class Progress:
    """A plain progress bar on a text stream (redrawn in place on a terminal, lines otherwise);
    `store.copy.CopyProgress`."""

    WIDTH = 30

    def __init__(
        self, total: int, total_bytes: int, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.total = max(total, 0)
        self.total_bytes = total_bytes
        self.done = 0
        self.bytes = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.start = time.monotonic()
        self._last = 0.0

    def begin(self, total: int, total_bytes: int) -> None:
        self.total = max(total, 0)
        self.total_bytes = total_bytes

    def advance(self, n: int, nbytes: int) -> None:
        self.done += n
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last >= (0.1 if self.tty else 2.0):
            self._last = now
            self._draw()

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.WIDTH)
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac * 100:5.1f}%  {self.done}/{self.total} messages"
            f"  {self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB  {rate:.0f} msg/s  eta {eta:.0f}s"
        )

    def _draw(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()


def data_dir_for(url: str, default: Path) -> Path:
    """Where a store URL's files live: for sqlite:///dir/mailhouse.db the blobs are in dir/blobs."""
    if url.startswith("sqlite://"):
        return Path(url.removeprefix("sqlite://")).parent
    return default


def describe(url: str) -> str:
    """URL without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


async def run_copy(
    src_url: str,
    dst_url: str,
    src_dir: Path,
    dst_dir: Path,
    *,
    out: TextIO | None = None,
    progress: bool = True,
    verify: bool = True,
) -> tuple[CopyResult, Report | None]:
    """Open both stores, copy, verify, print the report to OUT (stdout); progress on stderr."""
    out = out or sys.stdout
    src, dst = await open_pair(src_url, dst_url, src_dir, dst_dir)
    try:
        print(f"copying {describe(src_url)} → {describe(dst_url)}", file=out)
        res = await copy_store(src, dst, progress=Progress(0, 0, enabled=progress))
        rate = res.messages / res.seconds if res.seconds else 0.0
        print(
            f"copied {res.domains} domains, {res.accounts} accounts, {res.aliases} aliases, {res.dkim_keys} DKIM keys,"
            f" {res.mailboxes} mailboxes, {res.messages} messages ({res.expunged} expunged UIDs remembered),"
            f" {res.blobs} blobs / {res.bytes} bytes, {res.subscriptions} subscriptions, {res.metadata} metadata"
            f" entries, {res.queue} queued messages"
            + "".join(f", {n} {t} rows" for t, n in res.rows.items())
            + f" in {res.seconds:.1f} s ({rate:.0f} msg/s)",
            file=out,
        )
        rep = None
        if verify:
            rep = await verify_store(src, dst, blob_map=res.blob_map, blob_sha=res.blob_sha)
            print(rep.render(), file=out)
        return res, rep
    finally:
        await dst.close()
        await src.close()


async def run_verify(
    src_url: str, dst_url: str, src_dir: Path, dst_dir: Path, *, out: TextIO | None = None
) -> Report:
    out = out or sys.stdout
    src, dst = await open_pair(src_url, dst_url, src_dir, dst_dir)
    try:
        rep = await verify_store(src, dst)
        print(rep.render(), file=out)
        return rep
    finally:
        await dst.close()
        await src.close()


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
