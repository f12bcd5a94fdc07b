"""Issue 12 item 5: connection limits per client address, per account and per process.

Real listeners on loopback, real clients from chosen loopback source addresses (127.0.0.2,
127.0.0.3 …: Linux routes all of 127/8 to lo). Each test fails on the code before the change,
where every connection was greeted (3,000 idle connections from one address were held on
port 25) and an account could hold any number of IMAP sessions from one address.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mailhouse.accounts.passwords import make_credentials
from mailhouse.config import from_dict
from mailhouse.runtime.connlimits import (
    ConnectionGate,
    ConnectionPolicy,
    CountTable,
    Refusal,
    client_key,
    policy_from_config,
)
from mailhouse.services import Services

if TYPE_CHECKING:
    from tests.runtime.conftest import Listen

PASSWORD = "connlimits-pw"
USER = "u@example.org"

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(port: int, source: str) -> Stream:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _first_line(c: Stream) -> bytes:
    return await asyncio.wait_for(c[0].readline(), 20)


async def _close_all(conns: list[Stream]) -> None:
    for _, w in conns:
        w.close()
    await asyncio.sleep(0.2)  # let the server see the closes


async def test_smtp_51st_connection_from_one_address_gets_421(svc: Services, listen: Listen) -> None:
    srv, port = await listen("smtp")
    conns: list[Stream] = []
    try:
        for _ in range(60):
            conns.append(await _connect(port, "127.0.0.2"))
        lines = [await _first_line(c) for c in conns]
        greeted = [ln for ln in lines if ln.startswith(b"220 ")]
        refused = [ln for ln in lines if ln == b"421 4.7.0 Too many connections from your address\r\n"]
        assert len(greeted) == 50 and len(refused) == 10, lines[45:]
        for i, line in enumerate(lines):  # the refused ones are closed after the line
            if line.startswith(b"421"):
                assert await asyncio.wait_for(conns[i][0].read(), 10) == b""
        # another address is still served
        other = await _connect(port, "127.0.0.3")
        assert (await _first_line(other)).startswith(b"220 ")
        conns.append(other)
        # a slot given back is usable again
        conns[0][1].close()
        await asyncio.sleep(0.3)
        again = await _connect(port, "127.0.0.2")
        assert (await _first_line(again)).startswith(b"220 ")
        conns.append(again)
    finally:
        await _close_all(conns)
        srv.close()


async def test_trusted_networks_are_exempt(svc: Services, listen: Listen) -> None:
    svc.cfg.trusted_networks = ["127.0.0.2/32"]
    svc.cfg.conn_per_ip = {"smtp": 5}
    srv, port = await listen("smtp")
    conns: list[Stream] = []
    try:
        for _ in range(12):
            conns.append(await _connect(port, "127.0.0.2"))
        assert all(ln.startswith(b"220 ") for ln in [await _first_line(c) for c in conns])
        untrusted = [await _connect(port, "127.0.0.4") for _ in range(6)]
        conns += untrusted
        lines = [await _first_line(c) for c in untrusted]
        assert lines[-1].startswith(b"421 4.7.0") and all(ln.startswith(b"220 ") for ln in lines[:5]), lines
    finally:
        await _close_all(conns)
        srv.close()


@pytest.mark.parametrize(
    ("kind", "limit", "refusal"),
    [
        ("imap", 30, b"* BYE [UNAVAILABLE] Too many connections\r\n"),
        ("pop3", 20, b"-ERR [SYS/TEMP] Too many connections\r\n"),
        ("submission", 30, b"421 4.7.0 Too many connections from your address\r\n"),
    ],
)
async def test_per_address_limit_of_each_protocol(
    svc: Services, listen: Listen, kind: str, limit: int, refusal: bytes
) -> None:
    srv, port = await listen(kind)
    conns: list[Stream] = []
    try:
        for _ in range(limit + 2):
            conns.append(await _connect(port, "127.0.0.5"))
        lines = [await _first_line(c) for c in conns]
        assert all(not ln.startswith((b"* BYE", b"-ERR", b"421")) for ln in lines[:limit]), lines
        assert lines[limit:] == [refusal, refusal], lines[limit:]
    finally:
        await _close_all(conns)
        srv.close()


async def test_process_cap_refuses_cleanly(svc: Services, listen: Listen) -> None:
    svc.cfg.max_connections = 5
    srv, port = await listen("smtp")
    conns: list[Stream] = []
    try:
        for i in range(5):
            conns.append(await _connect(port, f"127.0.0.{10 + i}"))
        assert all(ln.startswith(b"220 ") for ln in [await _first_line(c) for c in conns])
        fresh = await _connect(port, "127.0.0.20")
        conns.append(fresh)
        assert await _first_line(fresh) == b"421 4.3.2 Too many connections, try again later\r\n"
    finally:
        await _close_all(conns)
        srv.close()


async def _imap_login(port: int, source: str, password: str = PASSWORD) -> tuple[Stream, bytes]:
    c = await _connect(port, source)
    assert (await _first_line(c)).startswith(b"* OK")
    c[1].write(f'a LOGIN {USER} "{password}"\r\n'.encode())
    while True:
        line = await _first_line(c)
        if line.startswith(b"a "):
            return c, line


async def test_imap_11th_login_of_one_user_from_one_address_refused(svc: Services, listen: Listen) -> None:
    await svc.store.add_domain("example.org")
    pw_hash, scram = make_credentials(PASSWORD)
    await svc.store.add_account(USER, pw_hash, scram=scram)
    srv, port = await listen("imap")
    conns: list[Stream] = []
    try:
        for _ in range(10):
            c, tagged = await _imap_login(port, "127.0.0.6")
            conns.append(c)
            assert tagged.startswith(b"a OK"), tagged
        c, tagged = await _imap_login(port, "127.0.0.6")
        conns.append(c)
        assert tagged == b"a NO [UNAVAILABLE] Too many connections\r\n"
        # the password is checked first: a wrong one is an ordinary failure, nothing leaks
        c, tagged = await _imap_login(port, "127.0.0.6", "wrong")
        conns.append(c)
        assert tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged
        # from another address the account is served
        c, tagged = await _imap_login(port, "127.0.0.7")
        conns.append(c)
        assert tagged.startswith(b"a OK"), tagged
        # a session that logs out gives its slot back
        r, w = conns[0]
        w.write(b"z LOGOUT\r\n")
        await asyncio.wait_for(r.read(), 10)
        await asyncio.sleep(0.2)
        c, tagged = await _imap_login(port, "127.0.0.6")
        conns.append(c)
        assert tagged.startswith(b"a OK"), tagged
    finally:
        await _close_all(conns)
        srv.close()


async def test_imap_per_account_total(svc: Services, listen: Listen) -> None:
    svc.cfg.conn_per_account = 3
    await svc.store.add_domain("example.org")
    pw_hash, scram = make_credentials(PASSWORD)
    await svc.store.add_account(USER, pw_hash, scram=scram)
    srv, port = await listen("imap")
    conns: list[Stream] = []
    try:
        for i in range(3):
            c, tagged = await _imap_login(port, f"127.0.1.{i + 1}")
            conns.append(c)
            assert tagged.startswith(b"a OK"), tagged
        c, tagged = await _imap_login(port, "127.0.1.9")
        conns.append(c)
        assert tagged == b"a NO [UNAVAILABLE] Too many connections\r\n"
    finally:
        await _close_all(conns)
        srv.close()


# ---------------------------------------------------------------- the table itself


def test_count_table_all_or_nothing_and_release() -> None:
    t = CountTable()
    assert t.acquire([(b"a", 2), (b"b", 1)]) is None
    assert t.acquire([(b"a", 2), (b"b", 1)]) == 1  # b is full: a is not counted either
    assert t.count(b"a") == 1 and t.count(b"b") == 1
    t.release([b"a", b"b"])
    assert t.count(b"a") == 0 and t.count(b"b") == 0


def test_count_table_is_shared_with_forked_workers(tmp_path: Path) -> None:
    t = CountTable(tmp_path / "connections.shm")
    pid = os.fork()
    if pid == 0:  # a worker: takes two slots and exits
        code = 0 if t.acquire([(b"ip", 3)]) is None and t.acquire([(b"ip", 3)]) is None else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert t.count(b"ip") == 2
    assert t.acquire([(b"ip", 3)]) is None
    assert t.acquire([(b"ip", 3)]) == 0  # the third slot was the last


def test_client_key_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"


def test_policy_from_config() -> None:
    cfg = from_dict(
        {
            "limits": {"trusted_networks": ["192.0.2.0/24"]},
            "connections": {"per_ip": {"smtp": 7}, "per_user_ip": 2, "per_account": 4, "max": 100},
        }
    )
    p = policy_from_config(cfg)
    assert p.per_ip["smtp"] == 7 and p.per_ip["imap"] == 30 and p.per_user_ip == 2
    gate = ConnectionGate(p)
    assert gate.trusted("192.0.2.9") and not gate.trusted("198.51.100.1")
    assert gate.capacity() <= 100


def test_gate_process_cap_counts_admissions() -> None:
    gate = ConnectionGate(ConnectionPolicy(max_connections=2))
    a = gate.admit("smtp", "192.0.2.1")
    b = gate.admit("imap", "192.0.2.2")
    assert not isinstance(a, Refusal) and not isinstance(b, Refusal)
    assert gate.admit("pop3", "192.0.2.3") is Refusal.BUSY
    a.release()
    a.release()  # idempotent
    assert gate.active == 1
    assert not isinstance(gate.admit("pop3", "192.0.2.3"), Refusal)


async def test_pop3_login_over_the_per_user_limit_is_in_use(svc: Services, listen: Listen) -> None:
    svc.cfg.conn_per_user_ip = 1
    await svc.store.add_domain("example.org")
    pw_hash, scram = make_credentials(PASSWORD)
    await svc.store.add_account(USER, pw_hash, scram=scram)
    srv, port = await listen("pop3")
    conns: list[Stream] = []

    async def login(source: str) -> bytes:
        c = await _connect(port, source)
        conns.append(c)
        assert (await _first_line(c)).startswith(b"+OK")
        c[1].write(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
        assert (await _first_line(c)).startswith(b"+OK")
        return await _first_line(c)

    try:
        assert (await login("127.0.0.8")).startswith(b"+OK Logged in")
        assert await login("127.0.0.8") == b"-ERR [IN-USE] Too many connections\r\n"
        conns[0][1].write(b"QUIT\r\n")
        await asyncio.wait_for(conns[0][0].read(), 10)
        await asyncio.sleep(0.2)
        assert (await login("127.0.0.8")).startswith(b"+OK Logged in"), "the slot was given back"
    finally:
        await _close_all(conns)
        srv.close()


def test_one_address_normaliser_for_bans_and_connection_counts() -> None:
    """`accounts.bans.normalise_ip` is the one spelling of a client address; the connection
    gate's key is it with IPv6 grouped by /64 (before: two copies of the parsing)."""
    from mailhouse.accounts.bans import normalise_ip

    for ip in ("192.0.2.1", "::ffff:192.0.2.1", "2001:db8:1:2::5", "fe80::1%eth0", "not-an-ip"):
        assert client_key(ip) == normalise_ip(ip, 64)
    assert normalise_ip("2001:db8:1:2:ffff::1", 64) == "2001:db8:1:2::/64"
    assert normalise_ip("2001:db8:1:2:ffff::1") == "2001:db8:1:2:ffff::1"  # bans: the address itself
    assert normalise_ip("::ffff:192.0.2.1", 64) == normalise_ip("::ffff:192.0.2.1") == "192.0.2.1"
