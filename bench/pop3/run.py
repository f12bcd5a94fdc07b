"""POP3 benchmark: Mailhouse vs Dovecot's dovecot-pop3d, same workload, same run.

Workload: ``--clients`` accounts (default 10), each with a ``--messages``-message INBOX
(default 1,000; the same seeded messages for both servers, 1-30 KiB). One connection per
account, all concurrently: USER/PASS, STAT, UIDL, then RETR n + DELE n for every message
(lock-step, as fetchmail and getmail do), then QUIT, which commits the deletions.
Printed: messages/s for each server (downloaded and deleted, timed from the moment all
clients are logged in), the ratio Mailhouse/Dovecot, the same ratio with the ten
concurrent logins included (both servers hash passwords with argon2id, m=64 MiB, t=3:
Dovecot's passwd-file gets ``{ARGON2ID}`` hashes from ``doveadm pw``), and the memory of each server's process tree (peak RSS, and RSS at
the end; Dovecot forks a pop3 process per connection so its RSS sum counts shared pages
several times).

Loading: Mailhouse gets the messages through its store API (blobs fsynced, put
concurrently so they share group commits; one index commit per mailbox; the 1,000 blobs are shared by the ten mailboxes, as the store's
reference-counted blobs allow), Dovecot gets Maildir files (``mail_fsync = never``,
``tests.peers.dovecot.DovecotInstance``). Loading is not timed. After the run both
servers are checked to hold zero messages. Run from the repository root:

    .venv/bin/python -m bench.pop3.run [--clients 10] [--messages 1000] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.dovecot import DovecotInstance

from bench.common import mib, peak_rss, rss
from mailhouse.accounts.passwords import make_credentials
from mailhouse.store import open_store
from mailhouse.store.api import NewMessage

WORDS = "meeting report budget travel invoice lunch project deadline review party plan release backup".split()


def make_messages(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.randint(1024, 30 * 1024)
        words: list[str] = []
        total = 0  # running sum(len(w) + 1): the same words as before, without the quadratic rescan
        while total < size:
            words.append(rng.choice(WORDS))
            total += len(words[-1]) + 1
        text = " ".join(words)
        body = "\r\n".join(text[k : k + 72] for k in range(0, len(text), 72))
        if i % 10 == 0:
            body = ".starts with a dot\r\n" + body  # exercise dot-stuffing
        out.append(
            (
                f"From: sender{i % 17}@remote.test\r\nTo: user@example.org\r\n"
                f"Subject: bench message {i}\r\nMessage-ID: <bench{i}@remote.test>\r\n"
                f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n{body}\r\n"
            ).encode()
        )
    return out


# ---------------------------------------------------------------- client


class Pop3Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    async def line(self) -> bytes:
        ln = await self.r.readuntil(b"\r\n")
        if not ln.startswith(b"+"):
            raise RuntimeError(f"server said {ln!r}")
        return ln

    async def cmd(self, c: bytes) -> bytes:
        self.w.write(c + b"\r\n")
        return await self.line()

    async def multi(self, c: bytes) -> bytes:
        self.w.write(c + b"\r\n")
        await self.line()
        return await self.r.readuntil(b"\r\n.\r\n")  # body, dot-stuffed, with terminator


async def one_client(
    host: str, port: int, user: str, ready: asyncio.Barrier
) -> tuple[int, int, float, float]:
    """Returns (messages, octets, time logged in, time done)."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    c = Pop3Client(reader, writer)
    await c.line()  # greeting
    await c.cmd(b"USER " + user.encode())
    await c.cmd(b"PASS " + PASSWORD.encode())
    await ready.wait()  # everybody logged in: the transfer phase starts together
    t_login = time.perf_counter()
    count = int((await c.cmd(b"STAT")).split()[1])
    await c.multi(b"UIDL")
    octets = 0
    for n in range(1, count + 1):
        octets += len(await c.multi(b"RETR %d" % n))
        await c.cmd(b"DELE %d" % n)
    await c.cmd(b"QUIT")  # UPDATE: the deletions are committed before +OK
    writer.close()
    return count, octets, t_login, time.perf_counter()


async def run_clients(host: str, port: int, users: list[str]) -> dict[str, float]:
    ready = asyncio.Barrier(len(users))
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one_client(host, port, u, ready) for u in users))
    start = min(r[2] for r in results)
    end = max(r[3] for r in results)
    return {
        "login": start - t0,
        "elapsed": end - start,
        "messages": sum(r[0] for r in results),
        "octets": sum(r[1] for r in results),
    }


async def count_left(host: str, port: int, user: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    c = Pop3Client(reader, writer)
    await c.line()
    await c.cmd(b"USER " + user.encode())
    await c.cmd(b"PASS " + PASSWORD.encode())
    n = int((await c.cmd(b"STAT")).split()[1])
    await c.cmd(b"QUIT")
    writer.close()
    return n


# ---------------------------------------------------------------- servers


async def load_mailhouse(mh: MailhouseProcess, users: list[str], messages: list[bytes]) -> None:
    pw_hash, scram = make_credentials(PASSWORD)
    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
    await store.open()
    try:
        # concurrent puts share the store's group commit (one fsync per batch, not per blob)
        keys = list(await asyncio.gather(*(store.blobs.put(m) for m in messages)))
        for u in users:
            acc = await store.add_account(u, pw_hash, scram=scram)
            mb = await store.get_mailbox(acc.id, "INBOX") or await store.create_mailbox(acc.id, "INBOX")
            await store.append(
                [
                    NewMessage(mb.id, k, len(m), internaldate=time.time())
                    for k, m in zip(keys, messages, strict=True)
                ]
            )
    finally:
        await store.close()


def bench_mailhouse(root: Path, users: list[str], messages: list[bytes], workers: int) -> dict[str, float]:
    extra = "[auth]\nallow_plaintext = true\n" + (f"[server]\nworkers = {workers}\n" if workers > 1 else "")
    root.mkdir(parents=True, exist_ok=True)
    mh = MailhouseProcess(root, services=("pop3",), extra=extra)
    mh.add_domain("example.org")
    asyncio.run(load_mailhouse(mh, users, messages))
    mh.start()
    try:
        assert mh.proc is not None
        host, port = mh.addr("pop3")
        r = asyncio.run(run_clients(host, port, users))
        r["left"] = sum(asyncio.run(count_left(host, port, u)) for u in users)
        r.update(peak_rss=peak_rss(mh.proc.pid), rss=rss(mh.proc.pid))
        return r
    finally:
        mh.stop()


def bench_dovecot(root: Path, users: list[str], messages: list[bytes]) -> dict[str, float]:
    dv = DovecotInstance(
        root,
        users={u: PASSWORD for u in users},
        imap_port=0,
        password_scheme="ARGON2ID",  # the same per-login cost as Mailhouse's argon2id
        extra_conf="service pop3 {\n  process_limit = 100\n}\n",
    )
    dv.write_config()
    for u in users:
        dv.add_messages(u, messages)
    dv.start()
    try:
        assert dv.proc is not None
        r = asyncio.run(run_clients(dv.host, dv.pop3_port or 0, users))
        r["left"] = sum(asyncio.run(count_left(dv.host, dv.pop3_port or 0, u)) for u in users)
        r.update(peak_rss=peak_rss(dv.proc.pid), rss=rss(dv.proc.pid))
        return r
    finally:
        dv.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1, help="Mailhouse [server] workers")
    args = ap.parse_args(argv)
    messages = make_messages(args.messages)
    users = [f"pop{i}@example.org" for i in range(args.clients)]
    print(
        f"{args.clients} clients x {args.messages} messages "
        f"({sum(map(len, messages)) / 1024:.0f} KiB per mailbox), RETR+DELE each, QUIT"
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-pop3-") as tmp:
        os.chmod(tmp, 0o755)  # Dovecot's auth and mail processes run as other users
        results["Dovecot"] = bench_dovecot(Path(tmp) / "dovecot", users, messages)
        results["Mailhouse"] = bench_mailhouse(Path(tmp) / "mailhouse", users, messages, args.workers)
    for name, r in results.items():
        rate = r["messages"] / r["elapsed"]
        r["rate"] = rate
        print(
            f"{name:10s} {r['messages']:6.0f} msgs in {r['elapsed']:6.2f} s = {rate:8.0f} msg/s  "
            f"(10 logins before: {r['login']:.2f} s)  "
            f"{r['octets'] / r['elapsed'] / 1048576:6.1f} MiB/s  peak RSS {mib(int(r['peak_rss']))}, "
            f"RSS at end {mib(int(r['rss']))}; left after QUIT: {r['left']:.0f}"
        )
        if r["left"] or r["messages"] != args.clients * args.messages:
            print(f"  {name}: WRONG RESULT", file=sys.stderr)
    print(f"ratio Mailhouse/Dovecot: {results['Mailhouse']['rate'] / results['Dovecot']['rate']:.2f}x")
    total = {k: r["login"] + r["elapsed"] for k, r in results.items()}
    print(
        f"with the logins (argon2id on both): Mailhouse {total['Mailhouse']:.2f} s, Dovecot {total['Dovecot']:.2f} s"
        f" = {total['Dovecot'] / total['Mailhouse']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
