"""POP3 `[IN-USE]` across two nodes on one PostgreSQL database (RFC 1939 §8, RFC 2449 §8.1.1).

Node A (127.0.0.2) and node B (127.0.0.3) are separate `mailhouse serve` processes: the
per-host flock cannot see across them, the PostgreSQL advisory lock does. The lock is free
again after the holder QUITs, and after the holding node is killed with SIGKILL.
"""

from __future__ import annotations

import poplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from .test_two_nodes import HOSTS

USER = "carol@example.org"


@pytest.fixture
def pop3_nodes(postgres_db_url: str, tmp_path: Path) -> Iterator[tuple[MailhouseProcess, MailhouseProcess]]:
    nodes = []
    for i, host in enumerate(HOSTS):
        d = tmp_path / f"node{i}"
        d.mkdir()
        nodes.append(
            MailhouseProcess(
                d,
                host=host,
                store_url=postgres_db_url,
                services=("pop3",),
                extra="[auth]\nallow_plaintext = true\n",
            )
        )
    a, b = nodes
    a.add_domain("example.org")
    a.add_user(USER)
    for n in nodes:
        n.start()
    try:
        yield a, b
    finally:
        for n in nodes:
            n.stop()


def _login(node: MailhouseProcess) -> poplib.POP3:
    c = poplib.POP3(*node.addr("pop3"), timeout=30)
    c.user(USER)
    c.pass_(PASSWORD)
    return c


def _in_use(node: MailhouseProcess) -> bytes:
    c = poplib.POP3(*node.addr("pop3"), timeout=30)
    c.user(USER)
    with pytest.raises(poplib.error_proto) as e:
        c.pass_(PASSWORD)
    c.quit()
    return bytes(e.value.args[0])


def test_in_use_across_nodes_until_quit_or_sigkill(
    pop3_nodes: tuple[MailhouseProcess, MailhouseProcess],
) -> None:
    a, b = pop3_nodes
    first = _login(a)
    assert _in_use(b).startswith(b"-ERR [IN-USE]")  # the other node
    assert _in_use(a).startswith(b"-ERR [IN-USE]")  # and the same node
    assert first.quit().startswith(b"+OK")  # released before this +OK
    second = _login(b)  # at once, on the other node
    assert _in_use(a).startswith(b"-ERR [IN-USE]")
    b.kill9()  # the holding node dies mid-session: its database session ends with it
    second.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            third = _login(a)
            break
        except poplib.error_proto as e:
            assert e.args[0].startswith(b"-ERR [IN-USE]")
            assert time.monotonic() < deadline, "maildrop still locked after the holding node was killed"
            time.sleep(0.1)
    assert third.quit().startswith(b"+OK")
