"""QueueRunner internals on a real SQLite store: the queued message kept for the first pass."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailhouse import config, services
from mailhouse.queue import runner as runner_mod


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Any]:
    cfg = config.from_dict(
        {"hostname": "mx.a.test", "data_dir": str(tmp_path), "dns": {"nameservers": ["127.0.0.1:9"]}}
    )
    s = await services.build(cfg)
    yield s
    await s.store.close()


async def _queue(svc: Any, qid: str, message: bytes) -> str:
    await svc.outbound.enqueue(qid, "alice@a.test", [("bob@b.test", {})], message, {})
    entry = await svc.store.get(qid)
    assert entry is not None
    return str(entry.blob_key)


async def test_first_pass_uses_the_message_in_memory(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real_get = svc.store.blobs.get

    async def counting_get(key: str) -> bytes:
        reads.append(key)
        return bytes(await real_get(key))

    monkeypatch.setattr(svc.store.blobs, "get", counting_get)
    message = b"From: alice@a.test\r\n\r\nhello\r\n"
    key = await _queue(svc, "Q1", message)
    assert await svc.outbound._message(key) == message
    assert reads == []  # no store read for the first pass
    assert await svc.outbound._message(key) == message  # a later pass reads the store
    assert reads == [key]


async def test_memory_is_bounded_oldest_first(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "RECENT_BYTES", 2000)
    keys = [await _queue(svc, f"Q{i}", b"x" * 400 + f"{i}\r\n".encode()) for i in range(8)]
    assert svc.outbound._recent_bytes <= 2000
    assert keys[0] not in svc.outbound._recent and keys[-1] in svc.outbound._recent
    for i, k in enumerate(keys):  # every message is still there, from memory or the store
        assert await svc.outbound._message(k) == b"x" * 400 + f"{i}\r\n".encode()
    assert svc.outbound._recent_bytes == 0 and not svc.outbound._recent


async def test_dead_cached_connection_is_retried_on_a_new_one(tmp_path: Path) -> None:
    """A pass that picks a cached connection the server has since dropped delivers on a
    fresh connection in the same pass, once (no deferral, no duplicate)."""
    import time

    from tests.smtpclient.fake_server import FakeSMTP

    srv = await FakeSMTP(extensions=("PIPELINING", "CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES")).start()
    cfg = config.from_dict(
        {
            "hostname": "mx.a.test",
            "data_dir": str(tmp_path),
            "dns": {"nameservers": ["127.0.0.1:9"]},
            "routes": {"b.test": {"host": srv.host, "port": srv.port, "tls": "none"}},
        }
    )
    s = await services.build(cfg)
    try:
        for i, drop in enumerate((False, True)):
            if drop:
                srv.drop_connections()
            await s.outbound.enqueue(
                f"R{i}", "alice@a.test", [("bob@b.test", {})], b"Subject: x\r\n\r\nhi\r\n", {}
            )
            (entry,) = await s.store.claim_due(time.time() + 1, "test", 60.0, 10)
            await s.outbound.process(entry)
            assert await s.store.get(f"R{i}") is None  # delivered and removed
        assert len(srv.transactions) == 2 and srv.connections == 2
    finally:
        await s.outbound.pool.close()
        await s.store.close()
        await srv.stop()


async def test_new_mail_is_handed_to_a_pass_without_a_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for another pass, enqueue writes the row leased to this process and starts
    its pass at once: delivered although no claim ever returns anything."""
    import asyncio

    from tests.smtpclient.fake_server import FakeSMTP

    srv = await FakeSMTP().start()
    cfg = config.from_dict(
        {
            "hostname": "mx.a.test",
            "data_dir": str(tmp_path),
            "dns": {"nameservers": ["127.0.0.1:9"]},
            "routes": {"b.test": {"host": srv.host, "port": srv.port, "tls": "none"}},
        }
    )
    s = await services.build(cfg)
    claims = 0

    async def no_claims(*a: Any) -> list[Any]:
        nonlocal claims
        claims += 1
        return []

    monkeypatch.setattr(s.store, "claim_due", no_claims)
    await s.outbound.start()
    try:
        await s.outbound.enqueue("H1", "alice@a.test", [("bob@b.test", {})], b"Subject: x\r\n\r\nhi\r\n", {})
        for _ in range(100):
            if len(srv.transactions) == 1 and await s.store.get("H1") is None:
                break
            await asyncio.sleep(0.05)
        assert len(srv.transactions) == 1 and await s.store.get("H1") is None
        # no room: the row is written unleased for a claim to take
        monkeypatch.setattr(runner_mod, "MAX_IN_FLIGHT", 0)
        await s.outbound.enqueue("H2", "alice@a.test", [("bob@b.test", {})], b"Subject: y\r\n\r\nhi\r\n", {})
        row = await s.store.get("H2")
        assert row is not None and row.lease_owner == "" and row.lease_until == 0.0
    finally:
        await s.outbound.stop()
        await s.store.close()
        await srv.stop()


async def test_handed_off_row_is_leased_before_the_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await services.build(
        config.from_dict(
            {"hostname": "mx.a.test", "data_dir": str(tmp_path), "dns": {"nameservers": ["127.0.0.1:9"]}}
        )
    )
    started: list[str] = []
    monkeypatch.setattr(s.outbound, "_start_pass", lambda entry, message=None: started.append(entry.id))
    await s.outbound.start()
    try:
        await s.outbound.enqueue("L1", "alice@a.test", [("bob@b.test", {})], b"x\r\n", {})
        row = await s.store.get("L1")
        assert started == ["L1"] and row is not None and row.lease_owner == s.outbound.owner
        assert row.lease_until > 0
    finally:
        await s.outbound.stop()
        await s.store.close()


async def test_outbound_mail_leaves_from_the_configured_source_address(tmp_path: Path) -> None:
    """[queue] source_address (Postfix smtp_bind_address): the remote server sees the
    connection come from that address, not the kernel's choice (127.0.0.1 on loopback)."""
    import time

    from tests.smtpclient.fake_server import FakeSMTP

    srv = await FakeSMTP(host="127.0.0.4").start()
    cfg = config.from_dict(
        {
            "hostname": "mx.a.test",
            "data_dir": str(tmp_path),
            "dns": {"nameservers": ["127.0.0.1:9"]},
            "routes": {"b.test": {"host": srv.host, "port": srv.port, "tls": "none"}},
            "queue": {"source_address": ["127.0.0.9", "::1"]},
        }
    )
    s = await services.build(cfg)
    try:
        await s.outbound.enqueue("S1", "alice@a.test", [("bob@b.test", {})], b"Subject: x\r\n\r\nhi\r\n", {})
        entry = await s.store.get("S1")
        if entry is not None:  # not already handed straight to a pass
            (entry,) = await s.store.claim_due(time.time() + 1, "test", 60.0, 10)
            await s.outbound.process(entry)
        for _ in range(100):
            if srv.transactions:
                break
            await asyncio.sleep(0.05)
        assert len(srv.transactions) == 1
        assert srv.peers == ["127.0.0.9"]  # the IPv4 source for an IPv4 peer
    finally:
        await s.outbound.pool.close()
        await s.store.close()
        await srv.stop()


@pytest.mark.parametrize("case", ["right-ca", "wrong-ca", "wrong-name"])
async def test_smarthost_tls_is_verified_before_the_password(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15 item 1: a relayhost (default tls = "required") gets AUTH and the message only
    when its certificate verifies against [tls] ca_file; otherwise the message is deferred
    with 4.7.5 in the queue and the log, and the password never leaves."""
    import time

    from tests.smtpclient.fake_server import FakeSMTP
    from tests.smtpclient.testca import TestCA

    ca, other = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other", "Other CA")
    server_ctx = {
        "right-ca": ca.server_context("127.0.0.1"),
        "wrong-ca": other.server_context("127.0.0.1"),
        "wrong-name": ca.server_context("other.test"),
    }[case]
    srv = await FakeSMTP(
        extensions=("PIPELINING", "STARTTLS", "ENHANCEDSTATUSCODES"),
        server_ssl=server_ctx,
        auth=("relay", "pw"),
    ).start()
    cfg = config.from_dict(
        {
            "hostname": "mx.a.test",
            "data_dir": str(tmp_path / "data"),
            "dns": {"nameservers": ["127.0.0.1:9"]},
            "tls": {"ca_file": str(ca.ca_file)},
            "relayhost": {"host": srv.host, "port": srv.port, "username": "relay", "password": "pw"},
        }
    )
    assert cfg.relayhost is not None and cfg.relayhost.tls == "required"
    s = await services.build(cfg)
    try:
        await s.outbound.enqueue("V1", "alice@a.test", [("bob@b.test", {})], b"Subject: x\r\n\r\nhi\r\n", {})
        (entry,) = await s.store.claim_due(time.time() + 1, "test", 60.0, 10)
        with caplog.at_level("INFO"):
            await s.outbound.process(entry)
        after = await s.store.get("V1")
        if case == "right-ca":
            assert after is None and srv.authenticated == ["relay"] and len(srv.transactions) == 1
        else:
            assert after is not None and after.recipients[0].status == "deferred"
            assert after.recipients[0].last_reply.startswith("451 4.7.5 certificate verification failed")
            assert "4.7.5 certificate verification failed" in caplog.text
            assert srv.authenticated == [] and not any(c.upper().startswith(b"AUTH") for c in srv.commands)
            assert not srv.transactions
    finally:
        await s.outbound.pool.close()
        await s.store.close()
        await srv.stop()
