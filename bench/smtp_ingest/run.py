"""SMTP ingest: Postfix's smtp-source sends N messages of 4 KiB over 10 sessions to
Mailhouse and, in the same run, to a private Postfix delivering to local maildirs.

Both are durable on the same disk: Mailhouse answers 250 only after the message is in
the mailbox (fsynced blob + committed index); Postfix's 250 means "in the queue", so its
rate is measured until the last message is delivered into a maildir (and its 250-rate is
shown too). Run from the repository root:

    .venv/bin/python -m bench.smtp_ingest.run [--messages 20000] [--workers 2] [--mode both] [--filter]

``--sieve`` (issue 17 §6, `sieve.py`): the recipient's active script is sieve30.sieve vs none.

Every look-up of the run goes to a local dnsmasq (the client's PTR/A, the sender domain's SPF;
nothing else is answered), the one key added to the default configuration.
With ``--filter`` the spam pipeline (issue 14) runs with its default rules and DNS lists
answered by a local dnsmasq (a DNSBL, a DNSWL and a domain list zone, PTR/A of the client):
Mailhouse is measured with it, with ``[spam] enabled = false`` and Postfix in the same run, and
the scoring cost per message is reported twice — as the end-to-end difference of the two
Mailhouse runs and as `SpamFilter.evaluate` timed in this process on the same message.

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
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from bench.common import cpu_seconds, mib, peak_rss
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer
from tests.peers.postfix import PostfixInstance, smtp_source

MODES = {"session": ["-d"], "connection": []}  # smtp-source -d: don't disconnect between messages


class CachedDNS(DNSServer):
    """dnsmasq with a TTL on its answers (its default for local records is 0, which no real
    DNS list uses): the filter's resolver caches them as it would a real list's."""

    def _conf_lines(self) -> list[str]:
        return [*super()._conf_lines(), "local-ttl=300", "neg-ttl=300"]


def bench_dns() -> DNSServer:
    """dnsmasq on loopback answering every look-up of the run (nothing leaves the machine): the
    client's PTR/A (rDNS), the sender domain's SPF, and for the filter the client listed in the
    allow list only."""
    return CachedDNS(
        a={"1.0.0.127.wl.bench.test": "127.0.10.2", "client.bench.test": "127.0.0.1"},
        ptr={"1.0.0.127.in-addr.arpa": "client.bench.test"},
        txt={"source.test": "v=spf1 ip4:127.0.0.0/8 -all"},
    ).start()


def dns_config(dns: DNSServer) -> str:
    """The one key the default configuration gets: the resolver (the system's is not ours to use)."""
    return f'[dns]\nnameservers = ["{dns.nameserver}"]\n'


def filter_config(dns: DNSServer) -> str:
    return (
        dns_config(dns)
        + '[spam]\ndnsbl = ["bl.bench.test"]\ndnswl = ["wl.bench.test"]\ndomain_blocklists = ["dbl.bench.test"]\n'
    )


def scoring_cost(dns: DNSServer, size: int, n: int = 2000) -> float:
    """Microseconds per `SpamFilter.evaluate` of a SIZE-octet message (DNS cached after the first)."""
    import asyncio

    from mailhouse.config import default_config, from_dict
    from mailhouse.spam.pipeline import SpamFilter
    from mailhouse.store.spool import SpooledMessage

    cfg = from_dict(
        {
            "dns": {"nameservers": [dns.nameserver]},
            "spam": {
                "dnsbl": ["bl.bench.test"],
                "dnswl": ["wl.bench.test"],
                "domain_blocklists": ["dbl.bench.test"],
            },
        }
    )
    cfg.hostname = default_config().hostname
    head = (
        b"From: <bench@client.bench.test>\r\nTo: <user@example.test>\r\nSubject: bench\r\n"
        b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@client.bench.test>\r\n\r\n"
    )
    line = b"see https://www.example.test/page for details, then reply to this message please.\r\n"
    msg = SpooledMessage.from_bytes(head + line * max(1, (size - len(head)) // len(line)))

    async def go() -> float:
        f = SpamFilter(cfg)
        await f.evaluate(
            msg, "127.0.0.1", "client.bench.test", "bench@client.bench.test", ["user@example.test"]
        )
        t0 = time.perf_counter()
        for _ in range(n):
            await f.evaluate(
                msg, "127.0.0.1", "client.bench.test", "bench@client.bench.test", ["user@example.test"]
            )
        return (time.perf_counter() - t0) / n * 1e6

    return asyncio.run(go())


def run_mailhouse(
    root: Path,
    messages: int,
    sessions: int,
    size: int,
    workers: int,
    mode: str = "session",
    extra: str = "",
    before_start: Callable[[MailhouseProcess], None] | None = None,
    cpu: list[float] | None = None,
) -> tuple[float, int, int]:
    """Elapsed seconds, peak RSS and messages stored; CPU seconds of the server's processes while
    the messages were sent are appended to CPU when given."""
    mh = MailhouseProcess(root, services=("smtp",), extra=f"[server]\nworkers = {workers}\n{extra}")
    mh.add_domain("example.test")
    mh.add_user("user@example.test")
    if before_start is not None:  # e.g. train the user's Bayes (bench/smtp_ingest/filtering.py)
        before_start(mh)
    mh.start()
    try:
        host, port = mh.addr("smtp")
        assert mh.proc is not None
        cpu0 = cpu_seconds(mh.proc.pid)
        elapsed = smtp_source(
            host,
            port,
            messages=messages,
            sessions=sessions,
            size=size,
            to="user@example.test",
            extra=MODES[mode],
        )
        if cpu is not None:
            cpu.append(cpu_seconds(mh.proc.pid) - cpu0)
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
    root: Path,
    messages: int,
    sessions: int,
    size: int,
    mode: str = "session",
    main: dict[str, str] | None = None,
    backend: Callable[[PostfixInstance], AbstractContextManager[object]] | None = None,
) -> tuple[float, float, int]:
    """BACKEND: what Postfix delivers through (e.g. Dovecot LMTP, bench/smtp_ingest/sieve.py), run
    around the measurement with Postfix's maildirs as its mail store; None: Postfix's virtual(8)."""
    pf = PostfixInstance(
        None,
        host="127.0.0.1",
        mode="local",
        domains=("example.test",),
        mailboxes=["user@example.test"] if backend else None,
        main={"default_process_limit": "100", "smtpd_client_connection_count_limit": "0", **(main or {})},
    )
    pf.start()
    try:
        with backend(pf) if backend else nullcontext():
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
    dns = bench_dns()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir="/var/tmp") as tmp:
            root = Path(tmp)
            (root / "mh").mkdir()
            extra = filter_config(dns) if a.filter else dns_config(dns)
            mh_t, mh_peak, mh_n = run_mailhouse(
                root / "mh", a.messages, a.sessions, a.size, a.workers, mode, extra
            )
            if a.filter:
                (root / "mh-off").mkdir()
                off_t, _, off_n = run_mailhouse(
                    root / "mh-off",
                    a.messages,
                    a.sessions,
                    a.size,
                    a.workers,
                    mode,
                    dns_config(dns) + "[spam]\nenabled = false\n",
                )
            pf_acc, pf_t, pf_n = run_postfix(root / "pf", a.messages, a.sessions, a.size, mode)
        per_message = scoring_cost(dns, a.size) if a.filter else 0.0
    finally:
        dns.stop()
    mh_rate = a.messages / mh_t
    pf_rate = a.messages / pf_t
    how = "many messages per session (-d)" if mode == "session" else "one connection per message"
    print(f"mode {mode}: {a.messages} x {a.size} B over {a.sessions} sessions, {how} (Postfix smtp-source)")
    label = "Mailhouse, filter on" if a.filter else "Mailhouse"
    print(
        f"{label} ({a.workers} workers): {mh_rate:8.0f} msg/s  (in mailbox at 250; {mh_n} stored)  "
        f"peak RSS {mib(mh_peak)}"
    )
    ok = mh_n == a.messages and pf_n == a.messages
    if a.filter:
        off_rate = a.messages / off_t
        print(f"Mailhouse, filter off ({a.workers} workers): {off_rate:8.0f} msg/s  ({off_n} stored)")
        # the server is CPU-bound: wall time per message × its processes ≈ CPU time per message
        delta = (1 / mh_rate - 1 / off_rate) * 1e6 * a.workers
        print(
            f"scoring cost per message: {per_message:.0f} µs in-process (SpamFilter.evaluate, DNS cached); "
            f"{delta:.0f} µs end to end (difference of the two runs × {a.workers} workers)"
        )
        ok = ok and off_n == a.messages
    print(
        f"Postfix (local maildir):     {pf_rate:8.0f} msg/s  (until delivered; {a.messages / pf_acc:.0f} msg/s "
        f"to 250; {pf_n} delivered)"
    )
    print(f"ratio Mailhouse/Postfix: {mh_rate / pf_rate:.2f}x")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", choices=[*MODES, "both"], default="both")
    ap.add_argument("--filter", action="store_true", help="spam filtering on, DNS lists from a local dnsmasq")
    ap.add_argument(
        "--rspamd", action="store_true", help="filtering on vs Postfix + Rspamd milter (filtering.py)"
    )
    ap.add_argument(
        "--sieve", action="store_true", help="a 30-rule Sieve script active vs none, and Postfix (sieve.py)"
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="--rspamd, --sieve: alternating runs per side (median)"
    )
    a = ap.parse_args()
    if a.sieve:
        from bench.smtp_ingest.sieve import run_sieve

        return 0 if all([run_sieve(a, mode) for mode in (MODES if a.mode == "both" else [a.mode])]) else 1
    if a.rspamd:
        from bench.smtp_ingest.filtering import run_filtering

        return 0 if all([run_filtering(a, mode) for mode in (MODES if a.mode == "both" else [a.mode])]) else 1
    ok = True
    for mode in MODES if a.mode == "both" else [a.mode]:
        ok = run_mode(a, mode) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
