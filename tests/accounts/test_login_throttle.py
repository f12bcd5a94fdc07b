"""Login throttling that holds under parallelism (issue 12 item 7), through real sockets.

One `mailhouse serve` with small configured delays; each test plays its client IPs from its own
loopback /24 (127.N.x.y) so the per-IP, per-/24 and per-account counters of one test never touch
another's. Timings are asserted as LOWER bounds computed from the configured delays (a loaded
machine only makes answers slower), never as upper bounds; the accounts have the cheapest argon2
parameters so that what is measured is the throttle, not argon2 on a loaded machine.

What today's per-process, per-attempt throttle did instead: 40 parallel guesses from one IP were
all answered at once (each computed its delay before any failure was counted); a success on the
attacker's own account cleared the IP's penalty; 20 IPs guessing one account saw no delay.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from .wire import Imap, Pop3, Smtp, add_cheap_users

BASE = 0.1  # [auth] failure_delay
CAP = 0.3  # [auth] max_failure_delay
ACCOUNT_AFTER = 5
NETWORK_AFTER = 10

CONFIG = f"""
[auth]
allow_plaintext = true
failure_delay = {BASE}
max_failure_delay = {CAP}
account_delay_after = {ACCOUNT_AFTER}
network_delay_after = {NETWORK_AFTER}
ban_after = 0
"""


def penalty(n: int) -> float:
    """The configured penalty after N counted failures (the rule, restated independently)."""
    return 0.0 if n <= 0 else min(CAP, BASE * 2 ** (n - 1))


@pytest.fixture(scope="module")
def mh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    root: Path = tmp_path_factory.mktemp("throttle")
    p = MailhouseProcess(root, services=("submission", "imap", "pop3"), extra=CONFIG)
    p.add_domain("example.org")
    names = ["victim", "attacker", "target"] + [f"u{i}" for i in range(40)] + [f"n{i}" for i in range(20)]
    add_cheap_users(p, [f"{u}@example.org" for u in names], PASSWORD)
    p.start()
    yield p
    p.stop()


def parallel(jobs: list[Callable[[], bytes]]) -> tuple[float, list[bytes]]:
    """Run JOBS at once (each its own connection, already open); seconds from the common start
    to the last answer, and the answers."""
    start = threading.Barrier(len(jobs) + 1)
    t0 = [0.0]

    def run(job: Callable[[], bytes]) -> bytes:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as ex:
        futures = [ex.submit(run, j) for j in jobs]
        start.wait()
        t0[0] = time.monotonic()
        answers = [f.result() for f in futures]
    return time.monotonic() - t0[0], answers


def test_parallel_guesses_from_one_ip_are_serialised(mh: MailhouseProcess) -> None:
    """40 guesses at once from one IP, over three protocols, take the sum of their penalties."""
    src = "127.10.0.1"
    conns: list[Smtp | Imap | Pop3] = []
    for i in range(40):
        kind = (Smtp, Imap, Pop3)[i % 3]
        svc = {Smtp: "submission", Imap: "imap", Pop3: "pop3"}[kind]
        conns.append(kind(mh.addr(svc), src))
    # one account each: only the per-IP counter applies (no account reaches its threshold)
    jobs = [lambda c=c, i=i: c.auth(f"u{i}@example.org", "guess") for i, c in enumerate(conns)]
    elapsed, answers = parallel(jobs)
    for c in conns:
        c.close()
    assert all(a.startswith((b"535", b"a1 NO", b"-ERR")) for a in answers), answers
    floor = sum(penalty(k) for k in range(40))  # the k-th answered guess waited penalty(k)
    assert elapsed >= floor - 0.05, (elapsed, floor)


def test_success_on_own_account_keeps_the_penalty_for_others(mh: MailhouseProcess) -> None:
    src = "127.11.0.1"
    c = Imap(mh.addr("imap"), src)
    for _ in range(3):
        assert b" NO " in c.auth("victim@example.org", "guess")
    c.close()
    own = Imap(mh.addr("imap"), src)
    assert b"a1 OK" in own.auth("attacker@example.org", PASSWORD)  # the attacker's own account
    own.close()
    p = Pop3(mh.addr("pop3"), src)
    t0 = time.monotonic()
    assert p.auth("victim@example.org", "guess").startswith(b"-ERR")
    assert time.monotonic() - t0 >= penalty(3) - 0.02  # the three failures still count
    p.close()


def test_many_ips_guessing_one_account_are_delayed(mh: MailhouseProcess) -> None:
    """20 IPs (20 different /24s, so only the account's counter applies), one guess each."""
    t0 = time.monotonic()
    for i in range(20):
        c = Smtp(mh.addr("submission"), f"127.13.{i}.1")
        assert c.auth("target@example.org", "guess").startswith(b"535")
        c.close()
    elapsed = time.monotonic() - t0
    floor = sum(penalty(k - ACCOUNT_AFTER + 1) for k in range(20))  # k failures before guess k
    assert floor > 2  # the test means something
    assert elapsed >= floor - 0.05, (elapsed, floor)
    # never a lock-out: the owner, from yet another address, still gets in (after the penalty)
    owner = Imap(mh.addr("imap"), "127.14.0.1")
    assert b"a1 OK" in owner.auth("target@example.org", PASSWORD)
    owner.close()


def test_many_ips_of_one_network_are_delayed(mh: MailhouseProcess) -> None:
    """20 addresses of one /24, each guessing a different account once."""
    t0 = time.monotonic()
    for i in range(20):
        c = Pop3(mh.addr("pop3"), f"127.15.0.{i + 1}")
        assert c.auth(f"n{i}@example.org", "guess").startswith(b"-ERR")
        c.close()
    elapsed = time.monotonic() - t0
    floor = sum(penalty(k - NETWORK_AFTER + 1) for k in range(20))
    assert floor > 2
    assert elapsed >= floor - 0.05, (elapsed, floor)


def readme_failregex() -> re.Pattern[str]:
    """The fail2ban filter the README documents, with fail2ban's <HOST> as a named group."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    m = re.search(r"`failregex = (.+?)`", text)
    assert m, "README documents no fail2ban failregex"
    return re.compile(m[1].replace("<HOST>", r"(?P<host>\S+)"))


FAIL2BAN = readme_failregex()


def test_failures_logged_in_one_shape(mh: MailhouseProcess) -> None:
    src = "127.16.0.1"
    secret = "Pa55-never-logged"
    for conn in (Smtp(mh.addr("submission"), src), Imap(mh.addr("imap"), src), Pop3(mh.addr("pop3"), src)):
        conn.auth("victim@example.org", secret)
        conn.close()
    for service in ("smtp", "imap", "pop3"):
        line = f"auth failed: service={service} ip={src} user=<victim@example.org> reason=password"
        assert mh.wait_log(line), mh.logtext()[-2000:]
    lines = [ln for ln in mh.logtext().splitlines() if f"ip={src} " in ln]
    assert all(FAIL2BAN.search(ln) and FAIL2BAN.search(ln)["host"] == src for ln in lines), lines
    assert secret not in mh.logtext()


def test_a_user_name_cannot_forge_the_log_line(mh: MailhouseProcess) -> None:
    c = Imap(mh.addr("imap"), "127.17.0.1")
    assert b" NO " in c.auth("x> reason=password auth failed: service=imap ip=192.0.2.1 user=<y", "nope")
    c.close()
    assert mh.wait_log("ip=127.17.0.1 ")
    hosts = {m["host"] for m in map(FAIL2BAN.search, mh.logtext().splitlines()) if m}
    assert "127.17.0.1" in hosts and "192.0.2.1" not in hosts
