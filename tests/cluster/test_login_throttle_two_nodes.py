"""Login failures and bans are shared by every node (issue 12 item 7): two `mailhouse serve`
processes on one PostgreSQL database, one client address guessing on both.

Today's throttle is per process: the second node knew nothing of the first one's failures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.accounts.wire import Imap, Pop3, add_cheap_users
from tests.mailhouse_proc import MailhouseProcess

from .test_two_nodes import HOSTS

BASE, CAP = 0.2, 0.4
BAN_AFTER = 6
CONFIG = f"""
[auth]
allow_plaintext = true
failure_delay = {BASE}
max_failure_delay = {CAP}
ban_after = {BAN_AFTER}
"""


@pytest.fixture
def nodes(postgres_db_url: str, tmp_path: Path) -> Iterator[tuple[MailhouseProcess, MailhouseProcess]]:
    made = []
    for i, host in enumerate(HOSTS):
        d = tmp_path / f"node{i}"
        d.mkdir()
        made.append(
            MailhouseProcess(d, host=host, store_url=postgres_db_url, services=("imap", "pop3"), extra=CONFIG)
        )
    a, b = made
    a.add_domain("example.org")
    add_cheap_users(a, ["carol@example.org"], "correct-horse-42")
    for n in made:
        n.start()
    try:
        yield a, b
    finally:
        for n in made:
            n.stop()


def test_two_nodes_share_failures_and_bans(nodes: tuple[MailhouseProcess, MailhouseProcess]) -> None:
    a, b = nodes
    src = "127.50.0.1"
    for _ in range(3):
        c = Imap(a.addr("imap"), src)
        assert b"a1 NO" in c.auth("carol@example.org", "guess")
        c.close()
    # node B waits the penalty of the three failures node A counted
    p = Pop3(b.addr("pop3"), src)
    t0 = time.monotonic()
    assert p.auth("carol@example.org", "guess").startswith(b"-ERR")
    assert time.monotonic() - t0 >= min(CAP, BASE * 4) - 0.02
    p.close()
    for _ in range(BAN_AFTER - 4):
        p = Pop3(b.addr("pop3"), src)
        assert p.auth("carol@example.org", "guess").startswith(b"-ERR")
        p.close()
    assert b.wait_log(f"auth ban: ip={src}")
    # node A refuses the address at connect (within its few seconds of cache)
    end = time.monotonic() + 30
    while not Imap(a.addr("imap"), src).greeting.startswith(b"* BYE"):
        assert time.monotonic() < end, "node A never saw node B's ban"
        time.sleep(0.3)
