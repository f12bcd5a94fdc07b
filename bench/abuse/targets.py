"""The servers under attack, started on loopback and stopped by PID, and their memory sampler.

- Mailhouse: ``MailhouseProcess`` with the default config (SQLite, one process) plus
  ``[auth] allow_plaintext = true`` (the benchmark logs in without TLS, as the other benchmarks
  do), listening on SMTP, IMAP, POP3 and HTTP. Mailboxes are loaded through the store API
  before start (not timed, nothing measured).
- Reference: Postfix (``PostfixInstance``, smtpd + virtual(8) delivery into maildirs, as
  ``bench/smtp_ingest`` does) and Dovecot (``DovecotInstance``, IMAP + POP3 on the same
  maildirs, argon2id password hashes like Mailhouse). The test peers relax some limits for
  interop tests; here Postfix's and Dovecot's own defaults are put back where they matter
  to the abuse (``smtpd_client_connection_count_limit = 50``, error sleep/limits,
  ``in_flow_delay``, ``mail_max_userip_connections = 10``). Both keep a 50 MiB
  message size limit (Mailhouse's default; Postfix's own default is 10 MB) so a 48 MB DATA
  is the same request to both.

``Target.roots`` names the process trees whose memory ``bench.abuse.memory.Sampler`` sums
(Postfix's master and Dovecot's master: every smtpd, cleanup, virtual, imap-login, imap,
pop3 ... process they fork).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer
from tests.peers.dovecot import DovecotInstance
from tests.peers.postfix import PostfixInstance

from bench.abuse.workload import PASSWORD, Endpoints, Profile, big_message, html_message, small_message

SMALL_MESSAGES = 3  # in the legitimate user's INBOX (FETCH 1)
USERS = ("user@example.org", "big@example.org", "bulk@example.org", "web@example.org")


def pop_users(n: int) -> tuple[str, ...]:
    return tuple(f"pop{i}@example.org" for i in range(n))


@dataclass
class Target:
    name: str
    endpoints: Endpoints
    roots: dict[str, int]  # process trees to measure
    stop: Any  # () -> None
    notes: list[str] = field(default_factory=list)
    diagnose: Any = None  # () -> dict, after stop: what the server's own log says


STALL = re.compile(r"event loop blocked for (\d+) ms in task \S+ at (\S+?):\d+ (\w+)")


def watchdog_stalls(log: str) -> dict[str, Any]:
    """Mailhouse's loop-lag watchdog warnings in LOG: how many, the longest, where."""
    stalls = [(int(ms), f"{Path(path).name} {fn}") for ms, path, fn in STALL.findall(log)]
    where = Counter(w for _, w in stalls)
    return {
        "stalls": len(stalls),
        "max_ms": max((ms for ms, _ in stalls), default=0),
        "total_ms": sum(ms for ms, _ in stalls),
        "top": where.most_common(5),
    }


# ---------------------------------------------------------------- Mailhouse


async def _load_mailhouse(mh: MailhouseProcess, p: Profile, pops: tuple[str, ...]) -> str:
    from mailhouse.accounts.passwords import make_credentials
    from mailhouse.store import open_store
    from mailhouse.store.api import NewMessage

    pw_hash, scram = make_credentials(PASSWORD)
    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
    await store.open()
    try:
        boxes = {}
        for u in (*USERS, *pops):
            acc = await store.add_account(u, pw_hash, scram=scram)
            boxes[u] = await store.get_mailbox(acc.id, "INBOX") or await store.create_mailbox(acc.id, "INBOX")

        async def put(user: str, msgs: list[bytes]) -> None:
            keys = [await store.blobs.put(m) for m in msgs]
            await store.append(
                [NewMessage(boxes[user].id, k, len(m), internaldate=time.time()) for k, m in zip(keys, msgs)]
            )

        await put("user@example.org", [small_message(i) for i in range(SMALL_MESSAGES)])
        bigs = [big_message(i, p.big_size) for i in range(p.big_count)]
        await put("big@example.org", bigs)
        for u in pops:  # the same blob content; one RETR victim per POP3 slot (no maildrop lock clash)
            await put(u, bigs[:1])
        await put("web@example.org", [html_message(p.html_depth)])
        return f"/mail/{boxes['web@example.org'].id}/1"
    finally:
        await store.close()


def start_mailhouse(root: Path, p: Profile, n_pop: int) -> Target:
    root.mkdir(parents=True, exist_ok=True)
    # every DNS look-up answered on loopback (the system resolver is not ours to query, and one
    # that never answers would make each delivery wait out the DNS budget): PTR/A of the clients
    dns = DNSServer(
        a={"legit.bench.test": "127.0.0.1", "hostile.bench.test": "127.0.0.2"},
        ptr={"1.0.0.127.in-addr.arpa": "legit.bench.test", "2.0.0.127.in-addr.arpa": "hostile.bench.test"},
    ).start()
    mh = MailhouseProcess(
        root,
        services=("smtp", "imap", "pop3", "http"),
        extra=f'[auth]\nallow_plaintext = true\n[dns]\nnameservers = ["{dns.nameserver}"]\n',
    )
    try:
        mh.add_domain("example.org")
        pops = pop_users(n_pop)
        web_path = asyncio.run(_load_mailhouse(mh, p, pops))
        mh.start()
    except BaseException:
        dns.stop()
        raise
    assert mh.proc is not None
    ep = Endpoints(
        host=mh.host,
        smtp=mh.ports["smtp"],
        imap=mh.ports["imap"],
        pop3=mh.ports["pop3"],
        http=mh.ports["http"],
        web_path=web_path,
        pop_users=pops,
    )
    return Target(
        "mailhouse",
        ep,
        {"mailhouse": mh.proc.pid},
        lambda: (mh.stop(timeout=3), dns.stop()),  # SIGTERM drains; past 3 s the group is killed
        diagnose=lambda: {"watchdog": watchdog_stalls(mh.logtext())},
    )


# ---------------------------------------------------------------- Postfix + Dovecot

POSTFIX_DEFAULTS = {  # postconf -d values the test peer turns off for interop tests
    "smtpd_client_connection_count_limit": "50",
    "smtpd_error_sleep_time": "1s",
    "smtpd_soft_error_limit": "10",
    "smtpd_hard_error_limit": "20",
    "in_flow_delay": "1s",
}
DOVECOT_DEFAULTS = "mail_max_userip_connections = 10\n"


def start_reference(root: Path, p: Profile, n_pop: int) -> Target:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # Dovecot's and Postfix's delivery processes run as other users
    pops = pop_users(n_pop)
    users = (*USERS, *pops)
    pf = PostfixInstance(
        root / "postfix",
        host="127.0.0.1",
        mode="local",
        domains=("example.org",),
        mailboxes=users,
        mynetworks="127.0.0.1/32",  # the attackers' 127.0.0.2 is outside, like Mailhouse's anonymous senders
        main=POSTFIX_DEFAULTS,
    )
    pf.write_config()  # creates the maildir root that Dovecot shares
    dc = DovecotInstance(
        root / "dovecot",
        users={u: PASSWORD for u in users},
        mail_dir=pf.mail_dir,
        password_scheme="ARGON2ID",
        extra_conf=DOVECOT_DEFAULTS,
    )
    dc.write_config()
    base = time.time() - 86400
    for i in range(SMALL_MESSAGES):
        dc.add_message("user@example.org", small_message(i), internal_date=base + i)
    for i in range(p.big_count):
        msg = big_message(i, p.big_size)
        dc.add_message("big@example.org", msg, internal_date=base + i)
        if i == 0:
            for u in pops:
                dc.add_message(u, msg, internal_date=base)
    pf.start()
    try:
        dc.start()
    except Exception:
        pf.stop()
        raise
    assert pf.proc is not None and dc.proc is not None
    ep = Endpoints(
        host="127.0.0.1", smtp=pf.port or 0, imap=dc.imap_port or 0, pop3=dc.pop3_port or 0, pop_users=pops
    )

    def stop() -> None:
        try:
            dc.stop()
        finally:
            pf.stop()

    return Target(
        "postfix+dovecot",
        ep,
        {"postfix": pf.proc.pid, "dovecot": dc.proc.pid},
        stop,
        notes=["no webmail: the webmail_html slots are not run"],
    )
