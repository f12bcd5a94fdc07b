"""REQUIRETLS (RFC 8689) on the way out (queue/requiretls.py in queue/runner.py), with real parts:
dnsmasq for MX/A records, scriptable SMTP peers with certificates from a test CA (or another CA,
or no TLS at all), a Postfix peer with a test-CA certificate (Postfix has no REQUIRETLS), and the
MTA-STS lab of tests/queue/test_mtasts.py for `TLS-Required: No`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailhouse import config, services
from mailhouse.queue.dsn import RecipientReport, build_dsn
from mailhouse.store.api import QueueEntry
from tests.mailhouse_proc import MailhouseProcess
from tests.queue.test_mtasts import DOMAINS, Lab, cfg_for, lab  # noqa: F401 (fixture)
from tests.smtpclient.fake_server import FakeSMTP

PLAIN, RT, PF_RT, MH = "127.0.0.24", "127.0.0.25", "127.0.0.26", "127.0.0.27"
EXTS = ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN")


@pytest.fixture(scope="module")
def dns(dns_server_factory: Any) -> Any:
    return dns_server_factory(
        mx={
            **{d: [(10, mx)] for d, (mx, _) in DOMAINS.items()},
            "plain.test": [(10, "mx.plain.test")],
            "rt.test": [(10, "mx.rt.test")],
            "pfrt.test": [(10, "mx.pfrt.test")],
            "mh.test": [(10, "mx.mh.test")],
        },
        a={
            "mx.good.test": "127.0.0.21",
            "mx.bad.test": "127.0.0.22",
            "mx.plain.test": PLAIN,
            "mx.rt.test": RT,
            "mx.pfrt.test": PF_RT,
            "mx.mh.test": MH,
        },
        txt={f"_mta-sts.{d}": ["v=STSv1; id=20261207a"] for d in DOMAINS},
    )


@pytest.fixture
async def peers(lab: Lab) -> AsyncIterator[tuple[FakeSMTP, FakeSMTP]]:  # noqa: F811
    """mx.plain.test: no STARTTLS at all; mx.rt.test: verified TLS and REQUIRETLS."""
    plain = await FakeSMTP(PLAIN, lab.good.port, extensions=EXTS).start()
    rt = await FakeSMTP(
        RT,
        lab.good.port,
        extensions=(*EXTS, "STARTTLS", "REQUIRETLS"),
        server_ssl=lab.ca.server_context("mx.rt.test"),
    ).start()
    yield plain, rt
    for s in (plain, rt):
        await s.stop()


MESSAGE = b"From: alice@a.test\r\nSubject: secret plans\r\n\r\nthe body that must not leak\r\n"


async def deliver(
    cfg: config.Config,
    qid: str,
    domain: str,
    *,
    requiretls: bool = True,
    message: bytes = MESSAGE,
    local: str = "bob",
) -> tuple[QueueEntry | None, list[QueueEntry]]:
    """One delivery pass by a fresh node: (the entry after it or None when delivered, the DSNs queued)."""
    s = await services.build(cfg)
    try:
        before = {e.id for e in await s.store.list()}
        params: dict[str, str | None] = {"REQUIRETLS": None} if requiretls else {}
        await s.outbound.enqueue(qid, "alice@a.test", [(f"{local}@{domain}", {})], message, params)
        (entry,) = [e for e in await s.store.claim_due(time.time() + 1, "test", 60.0, 10) if e.id == qid]
        assert (entry.extra.get("requiretls") == "1") is requiretls  # recorded with the message
        await s.outbound.process(entry)
        dsns = [e for e in await s.store.list() if e.sender == "" and e.id not in before | {qid}]
        return await s.store.get(qid), dsns
    finally:
        await s.outbound.pool.close()
        await s.store.close()


async def dsn_text(cfg: config.Config, entry: QueueEntry) -> bytes:
    s = await services.build(cfg)
    try:
        return await s.store.blobs.get(entry.blob_key)
    finally:
        await s.outbound.pool.close()
        await s.store.close()


def failed_with(entry: QueueEntry | None, prefix: str) -> bool:
    return entry is None or (
        entry.recipients[0].status == "failed" and entry.recipients[0].last_reply.startswith(prefix)
    )


async def test_peer_without_tls_bounces_5_7_10_without_content(lab: Lab, peers: Any) -> None:  # noqa: F811
    plain, _ = peers
    cfg = cfg_for(lab)
    entry, dsns = await deliver(cfg, "R1", "plain.test")
    assert entry is None or failed_with(entry, "550 5.7.10")
    assert plain.transactions == []  # never sent in the clear
    (dsn,) = dsns
    text = await dsn_text(cfg, dsn)
    assert b"Status: 5.7.10" in text and b"REQUIRETLS" in text
    assert b"must not leak" not in text and b"secret plans" not in text  # RFC 8689 §5


async def test_verified_tls_without_requiretls_extension_bounces_5_7_30(lab: Lab, peers: Any) -> None:  # noqa: F811
    cfg = cfg_for(lab)
    _, dsns = await deliver(cfg, "R2", "testing.test")  # mx.bad.test: another CA → 5.7.10
    assert b"Status: 5.7.10" in await dsn_text(cfg, dsns[0])
    assert lab.bad.transactions == []
    # mx.good.test: verified TLS, but no REQUIRETLS advertised (MTA-STS enforce for enf.test)
    _, dsns = await deliver(cfg, "R3", "enf.test")
    text = await dsn_text(cfg, dsns[0])
    assert b"Status: 5.7.30" in text and b"REQUIRETLS support required" in text
    assert lab.good.transactions == [] and lab.good.tls_sessions == 1


async def test_verified_tls_and_requiretls_delivered_with_the_flag(lab: Lab, peers: Any) -> None:  # noqa: F811
    _, rt = peers
    entry, dsns = await deliver(cfg_for(lab), "R4", "rt.test")
    assert entry is None and dsns == []
    (tx,) = rt.transactions
    assert b"REQUIRETLS" in tx.mail.upper() and rt.tls_sessions == 1  # RFC 8689 §4.2.1 item 4


async def test_postfix_with_a_trusted_certificate_has_no_requiretls(
    lab: Lab,  # noqa: F811
    peers: Any,
    postfix_factory: Any,
) -> None:
    pf = postfix_factory(
        host=PF_RT, port=lab.good.port, domains=["pfrt.test"], main=lab.ca.postfix_tls("mx.pfrt.test")
    )
    cfg = cfg_for(lab)
    _, dsns = await deliver(cfg, "R5", "pfrt.test")
    assert b"Status: 5.7.30" in await dsn_text(cfg, dsns[0])
    assert "TLS connection established from" in pf.log(400)  # it got as far as verified TLS
    assert pf.delivered("bob@pfrt.test") == []
    # without REQUIRETLS the same message goes through
    entry, _ = await deliver(cfg, "R6", "pfrt.test", requiretls=False)
    assert entry is None
    await asyncio.to_thread(pf.wait_delivered, 1, "bob@pfrt.test")


async def test_tls_required_no_overrides_an_mta_sts_enforce_failure(lab: Lab, peers: Any) -> None:  # noqa: F811
    cfg = cfg_for(lab)
    entry, _ = await deliver(cfg, "N1", "badcert.test", requiretls=False)  # enforce, wrong CA
    assert entry is not None and entry.recipients[0].status == "deferred"
    optional = b"TLS-Required: No\r\n" + MESSAGE
    entry, _ = await deliver(cfg, "N2", "badcert.test", requiretls=False, message=optional)
    assert entry is None and len(lab.bad.transactions) == 1  # RFC 8689 §4.3
    # with REQUIRETLS the field is ignored (RFC 8689 §4.3): verified TLS or nothing
    entry, dsns = await deliver(cfg, "N3", "badcert.test", message=optional)
    assert len(lab.bad.transactions) == 1 and b"Status: 5.7.10" in await dsn_text(cfg, dsns[0])


async def test_second_mailhouse_receives_it_and_keeps_the_flag(
    lab: Lab,  # noqa: F811
    peers: Any,
    tmp_path: Path,
) -> None:
    """Mailhouse B (certificate from the test CA for mx.mh.test) takes the message over verified
    TLS with REQUIRETLS, and its alias sends it on to mx.rt.test with REQUIRETLS again."""
    _, rt = peers
    cert, key = lab.ca.issue("mx.mh.test")
    (tmp_path / "b").mkdir()
    b = MailhouseProcess(
        tmp_path / "b",
        host=MH,
        hostname="mx.mh.test",
        services=("smtp",),
        ports={"smtp": lab.good.port},
        extra=f'[tls]\ncert = "{cert}"\nkey = "{key}"\nca_file = "{lab.ca.ca_file}"\n'
        f'[dns]\nnameservers = ["{lab.dns.nameserver}"]\n[queue]\noutbound_port = {lab.good.port}\n',
    )
    b.add_domain("mh.test")
    b.add_user("bob@mh.test")
    b.cli("alias", "add", "fwd@mh.test", "carol@rt.test")
    await asyncio.to_thread(b.start)
    try:
        entry, dsns = await deliver(cfg_for(lab), "R7", "mh.test", local="fwd")
        assert entry is None and dsns == []
        for _ in range(300):
            if rt.transactions:
                break
            await asyncio.sleep(0.1)
        (tx,) = rt.transactions
        assert b"REQUIRETLS" in tx.mail.upper() and b"must not leak" in tx.data
        assert b"by mx.mh.test" in tx.data and b"ESMTPS" in tx.data  # B's hop, received over TLS
    finally:
        await asyncio.to_thread(b.stop)


def test_dsn_returns_no_content_of_a_requiretls_message() -> None:
    r = [RecipientReport("bob@x.test", "failed", "5.7.30", "550 5.7.30 REQUIRETLS support required")]
    kw: dict[str, Any] = dict(reporting_mta="mx.a.test", to="alice@a.test", original=MESSAGE, reports=r)
    assert b"must not leak" in build_dsn(**kw, queue_id="Q", arrival=0)
    without = build_dsn(**kw, queue_id="Q", arrival=0, return_content=False)
    assert b"must not leak" not in without and b"secret plans" not in without
    assert b"Status: 5.7.30" in without
