"""SMTP ingest with Sieve (issue 17 §6): the recipient's active script is the 30-rule
``sieve30.sieve`` (filing by header, subject and size, flags, regex and relational tests; the bench
messages match none of the filing rules, so every test runs, and end in INBOX) against no script,
in alternating rounds of the same run, then Postfix + Dovecot LMTP + Pigeonhole with the same
script and Postfix alone. Run from the repository root:

    .venv/bin/python -m bench.smtp_ingest.run --sieve [--messages 5000] [--mode session] [--rounds 3]

The cost per message is reported two ways: the CPU time of the Mailhouse processes (utime + stime
from /proc, sampled before and after the messages are sent) per message, and the difference of
the wall time per message × workers. Both are medians over ROUNDS runs per side.

The reference is Postfix delivering over LMTP to Dovecot with Pigeonhole running the same script
as the user's active script (fsync on, as Mailhouse and Postfix's virtual(8)); Postfix's own
virtual(8) delivery without Sieve is shown too. Postfix's rates are until the last message is in
its maildir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import mib
from bench.smtp_ingest.run import bench_dns, dns_config, run_mailhouse, run_postfix
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dovecot import DovecotInstance
from tests.peers.ports import free_port, wait_port
from tests.peers.postfix import PostfixInstance

__all__ = ["SCRIPT", "install_script", "run_sieve"]

SCRIPT = Path(__file__).with_name("sieve30.sieve")
USER = "user@example.test"


def install_script(mh: MailhouseProcess) -> None:
    """Store SCRIPT as the bench recipient's active script (the store API ManageSieve uses)."""
    text = SCRIPT.read_text()

    async def put(admin: object) -> None:
        from mailhouse.accounts.admin import Admin

        assert isinstance(admin, Admin)
        store = admin.store
        account = await store.get_account(USER)
        assert account is not None
        await store.put_sieve_script(account.id, "bench", text, 10, 1 << 20, time.time())
        await store.set_active_sieve_script(account.id, "bench")
        assert await store.active_sieve_script(account.id) == ("bench", text)

    mh.admin(put)


def pigeonhole_conf(lmtp_port: int) -> str:
    """Appended to the Dovecot test peer's configuration (later settings win): LMTP on loopback
    with Pigeonhole's sieve plugin running the user's ~/.dovecot.sieve, and fsync back on (the
    peer turns it off for tests; Mailhouse and Postfix's virtual(8) fsync every message)."""
    return f"""
protocols = imap pop3 lmtp
mail_fsync = optimized
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
  process_min_avail = 2
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
"""


@contextmanager
def pigeonhole(pf: PostfixInstance, lmtp_port: int) -> Iterator[DovecotInstance]:
    """Dovecot delivering Postfix's mail over LMTP into Postfix's maildir tree, SCRIPT active."""
    dv = DovecotInstance(
        users={USER: "password"}, mail_dir=pf.mail_dir, extra_conf=pigeonhole_conf(lmtp_port)
    )
    dv.write_config()
    home = dv.maildir(USER)
    active = home / ".dovecot.sieve"
    shutil.copy(SCRIPT, active)
    os.chown(active, dv.uid, dv.gid)
    dv.start()
    try:
        wait_port("127.0.0.1", lmtp_port, timeout=15, proc=dv.proc)
        yield dv
        if not (home / ".dovecot.svbin").exists():  # Pigeonhole compiles the script on first use
            raise RuntimeError(f"Pigeonhole did not run the script:\n{dv.log()}")
    finally:
        dv.stop()


def interpreter_cost(size: int, n: int = 2000) -> float:
    """Milliseconds per run of SCRIPT by delivery's `SieveRunner` in this process (compiled once,
    as its cache does) on a SIZE-octet message shaped like smtp-source's: the language's share of
    the end-to-end cost."""
    import datetime as dt
    from typing import cast

    from mailhouse.delivery.sieve import DeliveryContext, Scripts, SieveRunner
    from mailhouse.sieve import SieveLimits
    from mailhouse.store.api import Store

    head = (
        b"From: <foo@source.test>\r\nTo: <user@example.test>\r\nDate: Tue, 08 Dec 2026 03:00:00 +0000\r\n"
        b"Message-Id: <20261208030000.1@source.test>\r\nSubject: test\r\n\r\n"
    )
    line = b"La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\r\n"
    message = head + line * max(1, (size - len(head)) // len(line))
    runner, scripts = SieveRunner(SieveLimits()), Scripts(user=("bench", SCRIPT.read_text()))
    ctx = DeliveryContext(
        message=message,
        envelope_from="foo@source.test",
        envelope_to=USER,
        original_recipient=USER,
        user_addresses=(USER,),
        spam_percent=None,
        environment={
            "domain": "example.org",
            "host": "mail.example.org",
            "location": "MDA",
            "phase": "during",
        },
        now=dt.datetime.now(dt.UTC),
        store=cast(Store, None),  # the script asks the store nothing (no mailboxexists, no duplicate)
        account_id=1,
    )

    async def go() -> float:
        first = await runner.run(scripts, message, ctx)
        assert not first.error and first.result is not None, first.error
        assert first.result.implicit_keep_flags == ("$Seen-By-Sieve",), first.result  # every rule ran
        t0 = time.perf_counter()
        for _ in range(n):
            await runner.run(scripts, message, ctx)
        return (time.perf_counter() - t0) / n * 1e3

    return asyncio.run(go())


def _flagged(mh_root: Path) -> int:
    """Messages the script flagged `$Seen-By-Sieve` (proof that it ran for each of them)."""
    from mailhouse.store import open_store

    async def count() -> int:
        data = mh_root / "data"
        st = open_store(f"sqlite:///{data / 'mailhouse.db'}", data)
        await st.open()
        try:
            account = await st.get_account(USER)
            assert account is not None
            n = 0
            for mbox in await st.list_mailboxes(account.id):
                n += sum("$Seen-By-Sieve" in m.flags for m in await st.list_messages(mbox.id))
            return n
        finally:
            await st.close()

    return asyncio.run(count())


def run_sieve(a: argparse.Namespace, mode: str) -> bool:
    dns = bench_dns()
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    ok = True
    peak = 0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sieve-", dir="/var/tmp") as tmp:
            root = Path(tmp)
            for r in range(a.rounds):
                for on in (False, True) if r % 2 == 0 else (True, False):  # alternate who goes first
                    d = root / f"mh-{r}-{'on' if on else 'off'}"
                    d.mkdir()
                    cpu: list[float] = []
                    t, peak_on, n = run_mailhouse(
                        d,
                        a.messages,
                        a.sessions,
                        a.size,
                        a.workers,
                        mode,
                        dns_config(dns),
                        install_script if on else None,
                        cpu,
                    )
                    rates[on].append(a.messages / t)
                    cpus[on].append(cpu[0] / a.messages)
                    ok = ok and n == a.messages
                    if on:
                        peak = max(peak, peak_on)
                        flagged = _flagged(d)
                        if flagged != a.messages:
                            print(f"script ran for {flagged} of {a.messages} messages")
                            ok = False
            pf_acc, pf_t, pf_n = run_postfix(root / "pf", a.messages, a.sessions, a.size, mode)
            port = free_port("127.0.0.1")
            dv_acc, dv_t, dv_n = run_postfix(
                root / "pf-dovecot",
                a.messages,
                a.sessions,
                a.size,
                mode,
                {"virtual_transport": f"lmtp:inet:127.0.0.1:{port}"},
                lambda pf: pigeonhole(pf, port),
            )
    finally:
        dns.stop()
    ok = ok and pf_n == a.messages and dv_n == a.messages
    dv_rate = a.messages / dv_t
    in_process = interpreter_cost(a.size)
    on_rate, off_rate = statistics.median(rates[True]), statistics.median(rates[False])
    on_cpu, off_cpu = statistics.median(cpus[True]), statistics.median(cpus[False])
    pf_rate = a.messages / pf_t
    how = "many messages per session (-d)" if mode == "session" else "one connection per message"
    print(
        f"mode {mode}: {a.messages} x {a.size} B over {a.sessions} sessions, {how} (Postfix smtp-source), "
        f"median of {a.rounds} round(s) per side"
    )
    print(
        f"Mailhouse, 30-rule script ({a.workers} workers): {on_rate:8.0f} msg/s  "
        f"CPU {on_cpu * 1e3:.3f} ms/msg  peak RSS {mib(peak)}"
    )
    print(
        f"Mailhouse, no script ({a.workers} workers):      {off_rate:8.0f} msg/s  CPU {off_cpu * 1e3:.3f} ms/msg"
    )
    print(
        f"Sieve cost per message: {(on_cpu - off_cpu) * 1e3:.3f} ms CPU (Mailhouse processes, /proc); "
        f"{(1 / on_rate - 1 / off_rate) * 1e3 * a.workers:.3f} ms end to end (wall time × {a.workers} workers); "
        f"{in_process:.3f} ms in-process (SieveRunner.run, script compiled once)"
    )
    print(
        f"Postfix (local maildir, no Sieve): {pf_rate:8.0f} msg/s  (until delivered; "
        f"{a.messages / pf_acc:.0f} msg/s to 250; {pf_n} delivered)"
    )
    print(
        f"Postfix + Dovecot LMTP + Pigeonhole, same script: {dv_rate:8.0f} msg/s  (until delivered; "
        f"{a.messages / dv_acc:.0f} msg/s to 250; {dv_n} delivered)"
    )
    print(f"ratio Mailhouse with script/Postfix + Pigeonhole: {on_rate / dv_rate:.2f}x")
    print(f"ratio Mailhouse with script/Postfix (no Sieve): {on_rate / pf_rate:.2f}x")
    print(
        "rounds (msg/s): script "
        + " ".join(f"{x:.0f}" for x in rates[True])
        + "; none "
        + " ".join(f"{x:.0f}" for x in rates[False])
    )
    return ok
