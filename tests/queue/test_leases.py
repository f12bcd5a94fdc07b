"""Queue leases on a real SQLite store: heartbeat renewal, a restarted node releasing the leases of
its earlier incarnation, and `mailhouse queue list` naming dead owners (issue 12 item 10)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailhouse import config, services
from mailhouse.cli.queue import cmd_queue
from mailhouse.queue import owner as owner_mod
from mailhouse.queue import runner as runner_mod
from mailhouse.queue.owner import LeaseState, Owner, lease_state, newest_incarnations
from mailhouse.queue.runner import QueueRunner
from mailhouse.store.api import QueueEntry, QueueRecipient


def _cfg(data_dir: Path, **extra: Any) -> config.Config:
    return config.from_dict(
        {"hostname": "mx.a.test", "data_dir": str(data_dir), "dns": {"nameservers": ["127.0.0.1:9"]}, **extra}
    )


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Any]:
    s = await services.build(_cfg(tmp_path))
    yield s
    await s.store.close()


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A next hop that accepts TCP connections and never says a word (a hung MX)."""
    srv = socket.socket()
    srv.bind(("127.0.0.4", 0))
    srv.listen(16)
    try:
        yield srv.getsockname()
    finally:
        srv.close()


def test_owner_ids_name_the_node_across_restarts(tmp_path: Path) -> None:
    a = owner_mod.node_id("mx.a.test", tmp_path)
    assert a == owner_mod.node_id("mx.a.test", tmp_path)  # kept in the data dir
    assert a.startswith("mx.a.test:") and a != owner_mod.node_id("mx.a.test", tmp_path / "x")
    first = owner_mod.new_incarnation(1000.0)
    later = owner_mod.new_incarnation(1000.5)
    assert first < later  # incarnations sort by start time
    o = Owner(a, first, 42)
    assert Owner.parse(str(o)) == o
    assert str(o).startswith(o.incarnation_prefix) and o.incarnation_prefix.startswith(o.node_prefix)
    assert Owner.parse("mx.a.test:123:abcd") is None  # an older release's owner id


async def test_restarted_node_releases_its_earlier_incarnations_leases_at_once(
    svc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first incarnation accepted mail and died mid-pass: rows written leased to it
    old = QueueRunner(svc.cfg, svc.store, svc.resolver, svc.delivery, incarnation="000000000001aaaa")
    monkeypatch.setattr(old, "_start_pass", lambda entry, message=None: None)
    old._task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]  # "running"
    for qid in ("P1", "P2"):
        await old.enqueue(qid, "alice@a.test", [("bob@b.test", {})], b"Subject: x\r\n\r\nhi\r\n", {})
    # a live node elsewhere (another data dir) holds one too
    other = Owner(owner_mod.node_id("mx.a.test", tmp_path / "other"), "000000000001aaaa", 7)
    e = QueueEntry("P3", "alice@a.test", [QueueRecipient("bob@b.test")], "", 3, time.time(), 0.0)
    e.lease_owner, e.lease_until = str(other), time.time() + 60
    await svc.store.enqueue(e, b"x\r\n")
    held = {x.id: x.lease_owner for x in await svc.store.list()}
    assert held["P1"] == held["P2"] == old.owner

    new = QueueRunner(svc.cfg, svc.store, svc.resolver, svc.delivery, incarnation="000000000002bbbb")
    assert new.owner_id.node == old.owner_id.node != other.node
    started: list[str] = []
    monkeypatch.setattr(new, "_start_pass", lambda entry, message=None: started.append(entry.id))
    await new.start()
    try:
        for _ in range(40):  # the first poll claims them: no waiting for the lease to expire
            if len(started) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(started) == ["P1", "P2"]
        rows = {x.id: x.lease_owner for x in await svc.store.list()}
        assert rows == {"P1": new.owner, "P2": new.owner, "P3": str(other)}
    finally:
        await new.stop()


async def test_heartbeat_keeps_a_slow_pass_leased(
    tmp_path: Path, blackhole: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_mod, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(runner_mod, "HEARTBEAT", 0.2)
    monkeypatch.setattr(runner_mod, "STOP_GRACE", 0.2)
    host, port = blackhole
    s = await services.build(_cfg(tmp_path, routes={"b.test": {"host": host, "port": port, "tls": "none"}}))
    renewals: list[int] = []
    renew = s.store.renew_leases

    async def counting(owner: str, until: float) -> int:
        n = await renew(owner, until)
        renewals.append(n)
        return n

    monkeypatch.setattr(s.store, "renew_leases", counting)
    await s.outbound.start()
    try:
        for qid in ("S1", "S2", "S3"):
            await s.outbound.enqueue(
                qid, "alice@a.test", [("bob@b.test", {})], b"Subject: x\r\n\r\nhi\r\n", {}
            )
        await asyncio.sleep(2.5)  # the passes hang on the greeting, well past the 1 s lease
        now = time.time()
        rows = await s.store.list()
        assert len(rows) == 3 and all(r.lease_owner == s.outbound.owner and r.lease_until > now for r in rows)
        assert await s.store.claim_due(now, "another-node", 60.0, 10) == []  # nobody takes them over
        assert renewals and set(renewals) == {3}  # one statement per beat renews all three
    finally:
        await s.outbound.stop()
        await s.store.close()


def test_lease_states() -> None:
    now = 1000.0
    node = "mx.a.test:abc"
    old, new = f"{node}|000000000001aaaa|1", f"{node}|000000000002bbbb|2"
    newest = newest_incarnations([old, new, "", "legacy:1:x"])
    assert newest == {node: "000000000002bbbb"}
    assert lease_state("", 0.0, now, newest) is LeaseState.FREE
    assert lease_state(new, now + 30, now, newest) is LeaseState.ACTIVE
    assert lease_state(old, now + 30, now, newest) is LeaseState.PREVIOUS
    assert lease_state(new, now - 1, now, newest) is LeaseState.EXPIRED
    assert lease_state("legacy:1:x", now + 30, now, newest) is LeaseState.ACTIVE


async def test_queue_list_shows_dead_owners(
    svc: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    now = time.time()
    node = owner_mod.node_id("mx.a.test", tmp_path)
    leases = {
        "D1": (f"{node}|000000000001aaaa|10", now + 50),  # previous incarnation of a restarted node
        "D2": (f"{node}|000000000002bbbb|11", now + 50),  # its current incarnation: live
        "D3": (f"{node}|000000000002bbbb|11", now - 5),  # lease expired unrenewed
        "D4": ("", 0.0),  # waiting
    }
    for qid, (who, until) in leases.items():
        e = QueueEntry(qid, "alice@a.test", [QueueRecipient("bob@b.test")], "", 3, now, now)
        e.lease_owner, e.lease_until = who, until
        await svc.store.enqueue(e, b"x\r\n")
    assert await cmd_queue(argparse.Namespace(action="list", id=None), svc.cfg) == 0
    out = capsys.readouterr().out
    state = {line.split()[0]: line.split()[3] for line in out.splitlines() if line[:1] == "D"}
    assert state == {"D1": "dead", "D2": "active", "D3": "dead", "D4": "pending"}
    assert f"owner {leases['D1'][0]} is dead (previous incarnation)" in out
    assert f"owner {leases['D3'][0]} is dead (lease expired)" in out
    assert await cmd_queue(argparse.Namespace(action="show", id="D1"), svc.cfg) == 0
    assert "dead owner (previous incarnation)" in capsys.readouterr().out
    # `retry` reschedules the dead owners' entries and leaves the live one alone
    assert await cmd_queue(argparse.Namespace(action="retry", id=None), svc.cfg) == 0
    assert "3 message(s) scheduled" in capsys.readouterr().out
    assert {e.id: e.lease_owner for e in await svc.store.list()} == {
        "D1": "",
        "D2": leases["D2"][0],
        "D3": "",
        "D4": "",
    }
