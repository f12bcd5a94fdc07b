"""Benchmark (not a test): relay throughput, submission → queue → SMTP → second server's mailbox.

Mailhouse: 10 sessions submit 4 KiB messages to Mailhouse A (port 587 style: STARTTLS +
AUTH, the MSA checks and DKIM signing included), A's queue relays them over SMTP to
Mailhouse B (`[routes] b.test`), which files them in bob's INBOX. The clock stops when
the last message is in B's store.

Reference, same run, same load generator: Postfix A (relay mode, plain SMTP from
mynetworks, no TLS/AUTH — Postfix's cheapest path) relays to Postfix B (virtual(8)
maildir delivery). The clock stops when the last maildir file exists.

    .venv/bin/python bench/relay/run.py [--messages 1000] [--sessions 10] [--size 4096] [--tls]

By default both sides run without TLS (Mailhouse: AUTH PLAIN over plaintext submission via
`[auth] allow_plaintext`, `tls = "none"` on the route) so the comparison is like for like;
`--tls` adds STARTTLS to both Mailhouse hops.

Prints msg/s for both, the ratio (goal ≥ 1.0×), and peak RSS of each side's process trees.
Everything binds to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import mib, peak_rss, rss  # noqa: E402
from tests.mailhouse_proc import PASSWORD, MailhouseProcess  # noqa: E402
from tests.peers.ports import free_port  # noqa: E402
from tests.peers.postfix import PostfixInstance  # noqa: E402


def body(i: int, size: int, sender: str) -> bytes:
    head = (
        f"From: <{sender}>\r\nTo: <bob@b.test>\r\nSubject: bench {i}\r\nMessage-ID: <bench{i}@a.test>\r\n\r\n"
    )
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    text = head.encode()
    while len(text) < size:
        text += line
    return text[: size - 2] + b"\r\n"


def drive(
    addr: tuple[str, int], sessions: int, messages: int, size: int, sender: str, tls: bool, auth: bool
) -> float:
    """Submit MESSAGES over SESSIONS parallel connections; returns the time submission took."""
    per = [messages // sessions + (1 if i < messages % sessions else 0) for i in range(sessions)]
    errors: list[BaseException] = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def session() -> smtplib.SMTP:
        for attempt in range(3):
            s = smtplib.SMTP(*addr, timeout=60)
            try:
                if tls:
                    s.starttls(context=ctx)  # retried: see the smtpserver STARTTLS race in the queue tests
                if auth:
                    s.login(sender, PASSWORD)
                return s
            except (ssl.SSLError, TimeoutError, smtplib.SMTPServerDisconnected):
                s.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def worker(n: int, base: int) -> None:
        try:
            with session() as s:
                for i in range(n):
                    s.sendmail(sender, ["bob@b.test"], body(base + i, size, sender))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t0 = time.monotonic()
    threads, base = [], 0
    for n in per:
        threads.append(threading.Thread(target=worker, args=(n, base)))
        base += n
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t0


def wait_for(
    count: Callable[[], int], target: int, timeout: float, pids: Callable[[], list[int]]
) -> tuple[float, int]:
    """Poll until COUNT() ≥ TARGET; returns (time, peak sampled RSS of PIDS)."""
    t0 = time.monotonic()
    peak = 0
    while True:
        peak = max(peak, sum(rss(p) for p in pids()))
        n = count()
        if n >= target:
            return time.monotonic() - t0, peak
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"only {n}/{target} delivered after {timeout}s")
        time.sleep(0.05)


def inbox_count(mh: MailhouseProcess, address: str) -> int:
    import sqlite3

    db = sqlite3.connect(f"file:{mh.data_dir / 'mailhouse.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute(
            "SELECT count(*) FROM messages m JOIN mailboxes b ON m.mailbox_id=b.id JOIN accounts a"
            " ON b.account_id=a.id WHERE a.address=? AND b.name='INBOX'",
            (address,),
        ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def bench_mailhouse(root: Path, args: argparse.Namespace) -> tuple[float, float, int]:
    b_port = free_port("127.0.0.21")
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    b = MailhouseProcess(
        root / "b", host="127.0.0.21", hostname="mx.b.test", services=("smtp",), ports={"smtp": b_port}
    )
    a = MailhouseProcess(
        root / "a",
        host="127.0.0.20",
        hostname="mx.a.test",
        services=("submission",),
        # Plain SMTP hop and AUTH without TLS, like the Postfix reference (see --tls)
        extra=(
            f'[routes]\n"b.test" = {{ host = "127.0.0.21", port = {b_port}, tls = "{"opportunistic" if args.tls else "none"}" }}\n'
            + ("" if args.tls else "[auth]\nallow_plaintext = true\n")
            + "[queue]\nretry_base = 1\nretry_max = 5\n"  # a transient hiccup must not park mail for 5 min
            + f"[server]\nworkers = {args.workers}\n"  # one Python process uses one core; Postfix uses all
        ),
    )
    a.add_domain("a.test")
    a.add_user("alice@a.test")
    b.add_domain("b.test")
    b.add_user("bob@b.test")
    with b, a:
        assert a.proc and b.proc
        procs = [a.proc.pid, b.proc.pid]
        drive(a.addr("submission"), args.sessions, 20, args.size, "alice@a.test", args.tls, True)  # warm-up
        wait_for(lambda: inbox_count(b, "bob@b.test"), 20, 60, lambda: procs)
        t0 = time.monotonic()
        submit_s = drive(
            a.addr("submission"), args.sessions, args.messages, args.size, "alice@a.test", args.tls, True
        )
        _, peak = wait_for(lambda: inbox_count(b, "bob@b.test"), 20 + args.messages, 600, lambda: procs)
        total = time.monotonic() - t0
        peak = max(peak, sum(peak_rss(p) for p in procs))
    return total, submit_s, peak


def bench_postfix(root: Path, args: argparse.Namespace) -> tuple[float, float, int]:
    pb = PostfixInstance(host="127.0.0.23", mode="local", domains=["b.test"]).start()
    try:
        pa = PostfixInstance(
            host="127.0.0.22",
            mode="relay",
            relay_to=f"127.0.0.23:{pb.port}",
            relay_domains=["b.test"],
            main={"default_destination_concurrency_limit": "20", "smtp_connection_cache_on_demand": "yes"},
        ).start()
        try:
            assert pa.proc and pb.proc
            procs = [pa.proc.pid, pb.proc.pid]
            drive(pa.address, args.sessions, 20, args.size, "alice@a.test", False, False)
            wait_for(lambda: len(pb.delivered()), 20, 60, lambda: procs)
            t0 = time.monotonic()
            submit_s = drive(
                pa.address, args.sessions, args.messages, args.size, "alice@a.test", False, False
            )
            _, peak = wait_for(lambda: len(pb.delivered()), 20 + args.messages, 600, lambda: procs)
            total = time.monotonic() - t0
        finally:
            pa.stop()
    finally:
        pb.stop()
    return total, submit_s, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument(
        "--workers", type=int, default=2, help="Mailhouse A worker processes (default 2: both cores)"
    )
    ap.add_argument(
        "--tls", action="store_true", help="Mailhouse side with STARTTLS on both hops (Postfix stays plain)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mh-bench-relay-") as tmp:
        root = Path(tmp)
        pf_total, pf_submit, pf_peak = bench_postfix(root / "postfix", args)
        print(f"Postfix → Postfix: {args.messages / pf_total:.1f} msg/s", flush=True)
        try:
            mh_total, mh_submit, mh_peak = bench_mailhouse(root / "mailhouse", args)
        finally:
            keep = Path("/tmp/mh-bench-relay-logs")
            keep.mkdir(exist_ok=True)
            for log in sorted((root / "mailhouse").glob("*/serve.log")):
                shutil.copy(log, keep / f"{log.parent.name}.log")
    n = args.messages
    print(f"relay benchmark: {n} messages of {args.size} octets over {args.sessions} sessions")
    print(
        f"  Mailhouse → Mailhouse: {n / mh_total:8.1f} msg/s delivered  (submission done in {mh_submit:.2f}s,"
        f" all in B's INBOX after {mh_total:.2f}s)  peak RSS {mib(mh_peak)} (A+B)"
    )
    print(
        f"  Postfix   → Postfix:   {n / pf_total:8.1f} msg/s delivered  (submission done in {pf_submit:.2f}s,"
        f" all in maildir after {pf_total:.2f}s)  peak RSS {mib(pf_peak)} (all Postfix processes)"
    )
    print(f"  ratio Mailhouse/Postfix: {pf_total / mh_total:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
