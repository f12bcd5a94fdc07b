"""SMTP ingest: Postfix's smtp-source sends N messages of 4 KiB over 10 sessions to
Mailhouse and, in the same run, to a private Postfix delivering to local maildirs.

Both are durable on the same disk: Mailhouse answers 250 only after the message is in
the mailbox (fsynced blob + committed index); Postfix's 250 means "in the queue", so its
rate is measured until the last message is delivered into a maildir (and its 250-rate is
shown too). Run from the repository root:

    .venv/bin/python -m bench.smtp_ingest.run [--messages 20000] [--workers 2] [--mode both]

Modes: ``session`` (smtp-source ``-d``: each session sends many messages, the original
measurement) and ``connection`` (no ``-d``: one connection per message, what Postfix does for
mail to different domains) — both with the default configuration, so the pregreet test is on
(issue 12 item 8: a client is tested once, then remembered).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.common import mib, peak_rss
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.postfix import PostfixInstance, smtp_source

MODES = {"session": ["-d"], "connection": []}  # smtp-source -d: don't disconnect between messages


def run_mailhouse(
    root: Path, messages: int, sessions: int, size: int, workers: int, mode: str = "session"
) -> tuple[float, int, int]:
    mh = MailhouseProcess(root, services=("smtp",), extra=f"[server]\nworkers = {workers}\n")
    mh.add_domain("example.test")
    mh.add_user("user@example.test")
    mh.start()
    try:
        host, port = mh.addr("smtp")
        elapsed = smtp_source(
            host,
            port,
            messages=messages,
            sessions=sessions,
            size=size,
            to="user@example.test",
            extra=MODES[mode],
        )
        assert mh.proc is not None
        peak = peak_rss(mh.proc.pid)
    finally:
        mh.stop()
    import asyncio

    from mailhouse.store import open_store

    async def count() -> int:
        st = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
        await st.open()
        try:
            return (await st.usage((await st.get_account("user@example.test")).id)).messages  # type: ignore[union-attr]
        finally:
            await st.close()

    return elapsed, peak, asyncio.run(count())


def run_postfix(
    root: Path, messages: int, sessions: int, size: int, mode: str = "session"
) -> tuple[float, float, int]:
    pf = PostfixInstance(
        None,
        host="127.0.0.1",
        mode="local",
        domains=("example.test",),
        main={"default_process_limit": "100", "smtpd_client_connection_count_limit": "0"},
    )
    pf.start()
    try:
        t0 = time.perf_counter()
        accepted = smtp_source(
            pf.host,
            pf.port,
            messages=messages,
            sessions=sessions,
            size=size,
            to="user@example.test",
            extra=MODES[mode],
        )
        pf.wait_delivered(messages, timeout=900)
        delivered = time.perf_counter() - t0
        n = len(pf.delivered())
    finally:
        pf.stop()
    return accepted, delivered, n


def run_mode(a: argparse.Namespace, mode: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        (root / "mh").mkdir()
        mh_t, mh_peak, mh_n = run_mailhouse(root / "mh", a.messages, a.sessions, a.size, a.workers, mode)
        pf_acc, pf_t, pf_n = run_postfix(root / "pf", a.messages, a.sessions, a.size, mode)
    mh_rate = a.messages / mh_t
    pf_rate = a.messages / pf_t
    how = "many messages per session (-d)" if mode == "session" else "one connection per message"
    print(f"mode {mode}: {a.messages} x {a.size} B over {a.sessions} sessions, {how} (Postfix smtp-source)")
    print(
        f"Mailhouse ({a.workers} workers): {mh_rate:8.0f} msg/s  (in mailbox at 250; {mh_n} stored)  "
        f"peak RSS {mib(mh_peak)}"
    )
    print(
        f"Postfix (local maildir):     {pf_rate:8.0f} msg/s  (until delivered; {a.messages / pf_acc:.0f} msg/s "
        f"to 250; {pf_n} delivered)"
    )
    print(f"ratio Mailhouse/Postfix: {mh_rate / pf_rate:.2f}x")
    return mh_n == a.messages and pf_n == a.messages


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", choices=[*MODES, "both"], default="both")
    a = ap.parse_args()
    ok = True
    for mode in MODES if a.mode == "both" else [a.mode]:
        ok = run_mode(a, mode) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
