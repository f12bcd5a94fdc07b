"""Full-text search benchmark (issue 13 §4): ``SEARCH BODY word`` on a big mailbox, in one run.

Three measurements on the same synthetic mailbox (``--messages``, default 100,000; seeded):

1. Mailhouse scanning (today's path): the mailbox is stored through the store API with no
   index, ``mailhouse serve`` is started, and ``--scan-queries`` SEARCH BODY commands are timed
   (each reads and decodes every message).
2. Mailhouse with the word index: `cli.index.backfill` indexes the same mailbox while the
   server runs (its throughput is printed), then ``--queries`` SEARCH BODY commands are timed
   on the same connection.
3. Dovecot 2.3 (Debian) with ``dovecot-fts-xapian`` on a Maildir of the same messages, indexed
   with ``doveadm index`` before the timing (``fts_autoindex``), same queries. Config::

       mail_plugins = $mail_plugins fts fts_xapian
       plugin { fts = xapian; fts_xapian = partial=3 full=20 verbose=0;
                fts_autoindex = yes; fts_enforced = yes }

   ``fts_enforced = yes`` makes Dovecot answer BODY from the index only (its substring
   semantics are xapian's: words and their 3..20-letter prefixes/infixes), Mailhouse confirms
   each candidate with the exact RFC 9051 matcher.

The mail: a Zipf-distributed vocabulary of 20,000 made-up words; bodies of 40-400 words; a
quarter multipart/alternative with an HTML part, a tenth quoted-printable. Query words are
drawn from ranks 300-5,000 (each in roughly 0.1-3 % of the messages). Over IMAP on loopback,
plaintext LOGIN, one client. Printed: p50/p99 per setup, the ratios, the index size. Run from
the repository root:

    .venv/bin/python -m bench.fts.run [--messages 100000] [--queries 50] [--scan-queries 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import quopri
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.dovecot import DovecotInstance

from bench.imap.run import Client, _wait_login
from mailhouse.cli.store import Progress
from mailhouse.message import fts_text

VOCAB = 20_000
SYLL = "ka lo mi ne su ta ri po ve da zu fe gi ho ja ku ly mo nu pe qua re si to vu wa xe yo ze bra".split()
XAPIAN_CONF = """\
mail_plugins = $mail_plugins fts fts_xapian
plugin {
  fts = xapian
  fts_xapian = partial=3 full=20 verbose=0
  fts_autoindex = yes
  fts_enforced = yes
}
"""


def vocabulary(seed: int) -> list[str]:
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < VOCAB:
        words["".join(rng.choice(SYLL) for _ in range(rng.randint(2, 4)))] = None
    return list(words)


def make_messages(n: int, seed: int = 13) -> tuple[list[bytes], list[str]]:
    rng = random.Random(seed)
    vocab = vocabulary(seed)
    cum: list[float] = []
    total = 0.0
    for rank in range(1, len(vocab) + 1):  # Zipf: weight 1/rank
        total += 1.0 / rank
        cum.append(total)
    out = []
    for i in range(n):
        words = rng.choices(vocab, cum_weights=cum, k=rng.randint(40, 400))
        subject = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(2, 7)))
        lines = "\r\n".join(" ".join(words[k : k + 12]) for k in range(0, len(words), 12))
        head = (
            f"From: {vocab[i % 500].title()} <u{i % 500}@example.net>\r\nTo: user@example.org\r\n"
            f"Subject: {subject}\r\nDate: Mon, {1 + i % 28} Jan 2024 {i % 24:02d}:00:00 +0000\r\n"
            f"Message-ID: <m{i}@bench.example>\r\nMIME-Version: 1.0\r\n"
        )
        if i % 4 == 0:
            head += 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
            body = (
                f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{lines}\r\n"
                f"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{lines}</p></body></html>\r\n"
                "--b--\r\n"
            )
        elif i % 10 == 1:
            head += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            body = (
                quopri.encodestring(lines.encode()).decode().replace("\n", "\r\n").replace("\r\r", "\r")
                + "\r\n"
            )
        else:
            head += "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            body = lines + "\r\n"
        out.append((head + body).encode())
    return out, vocab


def pct(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


async def search_once(c: Client, tag: bytes, word: str) -> tuple[float, int]:
    """One ``SEARCH BODY word`` on C: (seconds to the tagged OK, number of hits)."""
    t0 = time.perf_counter()
    c.w.write(tag + b" SEARCH BODY " + word.encode() + b"\r\n")
    await c.w.drain()
    found = -1
    while True:
        line = await c.r.readline()
        if line.startswith(b"* SEARCH"):
            found = len(line.split()) - 2
        elif line.startswith(tag + b" "):
            assert line.startswith(tag + b" OK"), line
            return time.perf_counter() - t0, found
        elif not line:
            raise ConnectionError("closed")


async def timed_searches(
    host: str, port: int, user: str, words: Sequence[str]
) -> tuple[list[float], list[int]]:
    c = await Client.connect(host, port)
    await c.login(user, PASSWORD)
    await c.cmd("SELECT INBOX")
    times, counts = [], []
    for i, w in enumerate(words):
        t, found = await search_once(c, b"S%d" % i, w)
        times.append(t)
        counts.append(found)
    c.close()
    return times, counts


async def provision(mh: MailhouseProcess, messages: Sequence[bytes]) -> None:
    from mailhouse.accounts.admin import Admin
    from mailhouse.accounts.passwords import make_credentials
    from mailhouse.store import open_store
    from mailhouse.store.api import NewMessage

    mh.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)  # no index yet
    await store.open()
    try:
        await Admin(store).add_domain("example.org")
        pw_hash, scram = make_credentials(PASSWORD)
        acc = await store.add_account("user@example.org", pw_hash, scram=scram)
        mb = await store.get_mailbox(acc.id, "INBOX")
        assert mb is not None
        base = time.time() - 86400 * 30
        for k in range(0, len(messages), 512):  # concurrent deliveries: group-committed
            await asyncio.gather(
                *(
                    store.deliver(m, [NewMessage(mb.id, "", 0, internaldate=base + (k + j) * 10)])
                    for j, m in enumerate(messages[k : k + 512])
                )
            )
    finally:
        await store.close()


async def backfill(mh: MailhouseProcess, jobs: int) -> tuple[int, float]:
    from mailhouse.cli.index import backfill as run_backfill
    from mailhouse.store import open_store

    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir, indexer=fts_text.extract)
    await store.open()
    try:
        t0 = time.perf_counter()
        n = await run_backfill(store, Progress(0, 0, enabled=False), jobs)
        return n, time.perf_counter() - t0
    finally:
        await store.close()


def run_mailhouse(
    root: Path, messages: Sequence[bytes], scan_words: Sequence[str], words: Sequence[str], jobs: int
) -> dict[str, Any]:
    extra = "[auth]\nallow_plaintext = true\n[limits]\nsearch_time_budget = 3600\n"
    root.mkdir(parents=True, exist_ok=True)
    mh = MailhouseProcess(root, services=("imap",), extra=extra)
    t0 = time.perf_counter()
    asyncio.run(provision(mh, messages))
    stored = time.perf_counter() - t0
    mh.start()
    try:
        host, port = mh.addr("imap")
        scan_t, scan_n = asyncio.run(timed_searches(host, port, "user@example.org", scan_words))
        n, secs = asyncio.run(backfill(mh, jobs))
        asyncio.run(timed_searches(host, port, "user@example.org", words[:2]))  # warm the unindexed cache
        idx_t, idx_n = asyncio.run(timed_searches(host, port, "user@example.org", words))
    finally:
        mh.stop()
    db = mh.data_dir / "mailhouse.db"
    return {
        "store_seconds": stored,
        "scan": scan_t,
        "scan_counts": scan_n,
        "indexed": idx_t,
        "indexed_counts": idx_n,
        "backfill_docs": n,
        "backfill_seconds": secs,
        "db_bytes": db.stat().st_size + sum(p.stat().st_size for p in db.parent.glob("mailhouse.db-*")),
    }


def run_dovecot(root: Path, messages: Sequence[bytes], words: Sequence[str]) -> dict[str, Any]:
    dc = DovecotInstance(root, users={"user@example.org": PASSWORD}, pop3_port=0, extra_conf=XAPIAN_CONF)
    dc.write_config()
    base = time.time() - 86400 * 30
    for i, m in enumerate(messages):
        dc.add_message("user@example.org", m, internal_date=base + i * 10)
    dc.start()
    try:
        assert dc.imap_port
        asyncio.run(_wait_login(dc.host, dc.imap_port))
        t0 = time.perf_counter()
        dc.doveadm("index", "-u", "user@example.org", "INBOX")
        indexed = time.perf_counter() - t0
        t, n = asyncio.run(timed_searches(dc.host, dc.imap_port, "user@example.org", words))
    finally:
        dc.stop(cleanup=False)
    return {"index_seconds": indexed, "indexed": t, "indexed_counts": n}


def summary(name: str, xs: Sequence[float]) -> str:
    return f"{name:<34} p50 {pct(xs, 50) * 1000:9.1f} ms   p99 {pct(xs, 99) * 1000:9.1f} ms   (n={len(xs)})"


def slowest(words: Sequence[str], times: Sequence[float], counts: Sequence[int], n: int = 3) -> str:
    """The N slowest queries: position on the connection (#0 also builds the session's message
    list after SELECT), word, hits, time; p99 of 50 queries is their maximum."""
    top = sorted(range(len(times)), key=lambda i: times[i], reverse=True)[:n]
    return "  slowest: " + "; ".join(
        f"#{i} {words[i]} {counts[i]} hits {times[i] * 1000:.0f} ms" for i in top
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--scan-queries", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="backfill extraction processes")
    ap.add_argument("--only", choices=("mailhouse", "dovecot"))
    ap.add_argument(
        "--dovecot-messages",
        type=int,
        help="Dovecot's mailbox: the first N messages only (doveadm index with fts-xapian is slow)",
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--dir", type=Path, help="work here (kept) instead of a temporary directory")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    messages, vocab = make_messages(a.messages)
    rng = random.Random(5)
    band = vocab[300:5000]
    words = [rng.choice(band) for _ in range(a.queries)]
    scan_words = words[: a.scan_queries]
    print(
        f"generated {len(messages)} messages ({sum(map(len, messages)) / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s"
    )
    out: dict[str, Any] = {"messages": len(messages), "words": words}
    with tempfile.TemporaryDirectory(prefix="mh-bench-fts-") as tmp_dir:
        tmp = str(a.dir) if a.dir else tmp_dir
        Path(tmp).mkdir(parents=True, exist_ok=True)
        Path(tmp).chmod(0o755)  # Dovecot's unprivileged processes must reach their sockets
        if a.only != "dovecot":
            out["mailhouse"] = mh = run_mailhouse(
                Path(tmp) / "mailhouse", messages, scan_words, words, a.jobs
            )
            print(
                f"mailhouse: stored in {mh['store_seconds']:.0f} s; backfill {mh['backfill_docs']} docs in "
                f"{mh['backfill_seconds']:.0f} s ({mh['backfill_docs'] / max(mh['backfill_seconds'], 1e-9):.0f}/s); "
                f"database {mh['db_bytes'] / 1e6:.0f} MB"
            )
            print(summary("Mailhouse, scan (no index)", mh["scan"]))
            print(summary("Mailhouse, word index", mh["indexed"]))
            print(slowest(words, mh["indexed"], mh["indexed_counts"]))
            same = mh["scan_counts"] == mh["indexed_counts"][: len(scan_words)]
            print(f"  scan vs index results identical on the scanned words: {same}")
            print(
                f"  speed-up over the scan (p50 / p50): {statistics.median(mh['scan']) / statistics.median(mh['indexed']):.0f}x"
            )
        if a.only != "mailhouse":
            dmsgs = messages[: a.dovecot_messages] if a.dovecot_messages else messages
            out["dovecot_messages"] = len(dmsgs)
            out["dovecot"] = dc = run_dovecot(Path(tmp) / "dovecot", dmsgs, words)
            print(f"dovecot: {len(dmsgs)} messages, doveadm index in {dc['index_seconds']:.0f} s")
            print(summary("Dovecot + fts-xapian", dc["indexed"]))
        if not a.only:
            r = statistics.median(out["dovecot"]["indexed"]) / statistics.median(out["mailhouse"]["indexed"])
            print(f"Mailhouse/Dovecot speed (p50 ratio): {r:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
