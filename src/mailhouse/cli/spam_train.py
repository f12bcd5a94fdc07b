"""`mailhouse spam train --spam|--ham USER PATH`: teach USER's Bayes classifier from a Maildir or an
mbox file (issue 14 §3).

PATH is a Maildir (a directory with ``cur/`` and/or ``new/``; ``tmp/`` is skipped), or an mbox file
(messages separated by ``From `` lines, mboxrd/mboxo ``>From`` quoting undone). Bounded: at most
`bayes.MAX_BYTES` octets of each message are read (the rest is skipped as it streams by), one
message at a time, so a 10 GB mbox takes constant memory. Progress goes to stderr every
`PROGRESS_EVERY` messages; the summary to stdout. Acts on the store directly (works while
`mailhouse serve` runs; every node sees the counts at once). Training a message already trained as
the same kind is counted as "already"; one trained as the other kind is moved over.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.spam.bayes import Bayes
from mailhouse.spam.tokens import MAX_BYTES

PROGRESS_EVERY = 100
CHUNK = 64 * 1024


def maildir_messages(path: Path) -> Iterator[bytes]:
    for sub in ("cur", "new"):
        d = path / sub
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                with f.open("rb") as fh:
                    yield fh.read(MAX_BYTES)


def mbox_messages(path: Path) -> Iterator[bytes]:
    """The messages of an mbox file, each cut at MAX_BYTES, read line by line."""
    cur: list[bytes] | None = None
    size = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.startswith(b"From "):
                if cur is not None:
                    yield b"".join(cur)
                cur, size = [], 0
                continue
            if cur is None or size >= MAX_BYTES:
                continue  # text before the first separator, or past the bound
            if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
                line = line[1:]  # mboxrd: one level of quoting removed
            cur.append(line[: MAX_BYTES - size])
            size += len(cur[-1])
        if cur is not None:
            yield b"".join(cur)


def messages_at(path: Path) -> Iterator[bytes]:
    if path.is_dir():
        if not ((path / "cur").is_dir() or (path / "new").is_dir()):
            raise ValueError(f"{path} is not a Maildir (no cur/ or new/)")
        return maildir_messages(path)
    if path.is_file():
        return mbox_messages(path)
    raise ValueError(f"{path}: no such Maildir or mbox file")


async def cmd_spam_train(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    spam = bool(args.spam)
    kind = "spam" if spam else "ham"
    path = Path(args.path)
    msgs = messages_at(path)

    async def run(store: Any) -> int:
        acc = await store.get_account(args.user.lower())
        if acc is None:
            raise ValueError(f"no such user: {args.user}")
        bayes = Bayes(store, min_spam=cfg.spam_bayes_min_spam, min_ham=cfg.spam_bayes_min_ham)
        seen = trained = 0
        try:
            for raw in msgs:
                seen += 1
                if await bayes.train(acc.id, raw, spam=spam):
                    trained += 1
                if seen % PROGRESS_EVERY == 0:
                    print(f"{seen} messages read, {trained} trained as {kind}", file=sys.stderr, flush=True)
            nspam, nham = await store.spam_totals(acc.id)
        finally:
            bayes.close()
        print(
            f"{acc.address}: {trained} of {seen} messages trained as {kind} ({seen - trained} already);"
            f" totals {nspam} spam, {nham} ham"
        )
        if nspam < bayes.min_spam or nham < bayes.min_ham:
            print(f"(the classifier gives verdicts from {bayes.min_spam} spam and {bayes.min_ham} ham on)")
        return 0

    return await with_store(cfg, run)


def add_train(spam_sub: Any) -> None:
    """`spam train` under the `spam` command (`cli/spam.py`, which also has `spam explain`)."""
    t = spam_sub.add_parser("train", help="train a user's Bayes classifier from a Maildir or mbox")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--spam", action="store_true", help="the messages are spam")
    g.add_argument("--ham", action="store_true", help="the messages are not spam")
    t.add_argument("user", help="the account (address)")
    t.add_argument("path", help="a Maildir directory or an mbox file")
    t.set_defaults(fn=cmd_spam_train)
