"""Outbound SMTP client against a scriptable loopback server (tests/smtpclient/fake_server.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailhouse import tls
from mailhouse.smtpclient.client import (
    ConnectionPool,
    ProtocolViolation,
    SmtpConnection,
    SmtpError,
    TlsVerifyFailed,
    xtext,
)
from tests.smtpclient.fake_server import FakeSMTP
from tests.smtpclient.testca import TestCA

MSG = b"From: a@a.test\r\nTo: b@b.test\r\nSubject: hi\r\n\r\nhello\r\n"


async def open_conn(srv: FakeSMTP, **kw: object) -> SmtpConnection:
    conn = SmtpConnection("fake.test", srv.host, srv.port)
    await asyncio.wait_for(conn.open("client.test", tls_context=tls.client_context(), **kw), 10)  # type: ignore[arg-type]
    return conn


async def test_dot_stuffing_after_bare_cr_and_lf() -> None:
    # CVE-2023-51764 / CVE-2026-33604 class: "\r.\r" and "\n.\n" must not end DATA early
    srv = await FakeSMTP().start()
    conn = await open_conn(srv)
    body = b"Subject: x\r\n\r\nline1\r.\rline2\n.\nMAIL FROM:<evil@x>\r\n.\r\nend"
    res = await conn.send("a@a.test", [("b@b.test", {})], body)
    assert [r.code for r in res] == [250]
    assert len(srv.transactions) == 1
    raw = srv.transactions[0].data
    assert raw == b"Subject: x\r\n\r\nline1\r\n..\r\nline2\r\n..\r\nMAIL FROM:<evil@x>\r\n..\r\nend\r\n.\r\n"
    assert raw.count(b"\r\n.\r\n") == 1 and raw.endswith(b"\r\n.\r\n")
    await conn.quit()
    await srv.stop()


async def test_pipelining_sends_one_group() -> None:
    # The server holds every reply until it has read DATA: a non-pipelining client would hang.
    srv = await FakeSMTP(strict_pipelining=True).start()
    conn = await open_conn(srv)
    res = await asyncio.wait_for(conn.send("a@a.test", [("b@b.test", {}), ("c@b.test", {})], MSG), 5)
    assert [r.code for r in res] == [250, 250]
    await conn.quit()
    await srv.stop()


async def test_chunking_uses_bdat_and_normalises_newlines() -> None:
    srv = await FakeSMTP(extensions=("PIPELINING", "CHUNKING", "8BITMIME")).start()
    conn = await open_conn(srv)
    res = await conn.send("a@a.test", [("b@b.test", {})], b"Subject: x\n\n.dot\rbare\n")
    assert [r.code for r in res] == [250]
    tx = srv.transactions[0]
    assert tx.bdat
    assert tx.data == b"Subject: x\r\n\r\n.dot\r\nbare\r\n"  # no dot-stuffing in BDAT, CRLF only
    assert not any(c.startswith(b"DATA") for c in srv.commands)
    await conn.quit()
    await srv.stop()


async def test_mixed_recipient_replies_one_by_one() -> None:
    srv = await FakeSMTP().start()
    conn = await open_conn(srv)
    res = await conn.send("a@a.test", [("ok@c.test", {}), ("perm@c.test", {}), ("temp@c.test", {})], MSG)
    assert [r.code for r in res] == [250, 550, 451]
    assert res[1].permanent and not res[2].permanent and res[0].ok
    assert "no such user" in res[1].text
    assert srv.transactions[0].accepted == ["ok@c.test"]
    await conn.quit()
    await srv.stop()


async def test_all_recipients_refused_sends_no_body() -> None:
    srv = await FakeSMTP().start()
    conn = await open_conn(srv)
    res = await conn.send("a@a.test", [("perm1@c.test", {}), ("temp@c.test", {})], MSG)
    assert [r.code for r in res] == [550, 451]
    assert srv.transactions == []
    # the session is still usable
    res = await conn.send("a@a.test", [("ok@c.test", {})], MSG)
    assert [r.code for r in res] == [250]
    await conn.quit()
    await srv.stop()


async def test_dsn_parameters_only_when_offered() -> None:
    srv = await FakeSMTP().start()
    conn = await open_conn(srv)
    mp = conn.mail_params(MSG, "HDRS", "env id+1", False)
    rp = conn.rcpt_params("SUCCESS,FAILURE", "rfc822;bob+x@b.test")
    await conn.send("a@a.test", [("b@b.test", rp)], MSG, mp)
    tx = srv.transactions[0]
    assert b"RET=HDRS" in tx.mail and b"ENVID=env+20id+2B1" in tx.mail
    assert b"NOTIFY=SUCCESS,FAILURE" in tx.rcpts[0] and b"ORCPT=rfc822;bob+2Bx@b.test" in tx.rcpts[0]
    await conn.quit()
    await srv.stop()
    srv2 = await FakeSMTP(extensions=("PIPELINING",)).start()
    conn2 = await open_conn(srv2)
    assert conn2.mail_params(MSG, "HDRS", "x", False) == {}
    assert conn2.rcpt_params("NEVER", "rfc822;b@b.test") == {}
    await conn2.quit()
    await srv2.stop()


def test_xtext() -> None:
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"


async def test_starttls_opportunistic(tmp_path: Path) -> None:
    srv = await FakeSMTP(extensions=("PIPELINING", "STARTTLS"), tls_dir=tmp_path).start()
    conn = await open_conn(srv)
    assert conn.tls and srv.tls_sessions == 1
    assert "STARTTLS" not in conn.ext  # EHLO again after TLS (RFC 3207 §4.2)
    res = await conn.send("a@a.test", [("b@b.test", {})], MSG)
    assert [r.code for r in res] == [250]
    await conn.quit()
    await srv.stop()


async def test_starttls_injection_aborts(tmp_path: Path) -> None:
    # RFC 3207 §4.2 towards the client: data before the TLS handshake is an attack
    srv = await FakeSMTP(
        extensions=("PIPELINING", "STARTTLS"), tls_dir=tmp_path, starttls_inject=b"250 2.1.0 injected\r\n"
    ).start()
    with pytest.raises(ProtocolViolation, match="before the TLS handshake"):
        await open_conn(srv)
    assert not any(c.startswith(b"MAIL") for c in srv.commands)
    await srv.stop()


async def test_tls_required_but_not_offered() -> None:
    srv = await FakeSMTP().start()
    with pytest.raises(SmtpError, match="TLS required"):
        await open_conn(srv, tls_mode="required")
    await srv.stop()


async def test_reply_line_cap() -> None:
    srv = await FakeSMTP(greeting=b"220 " + b"x" * 10000).start()
    with pytest.raises(ProtocolViolation):
        await open_conn(srv)
    await srv.stop()


async def test_greeting_refused() -> None:
    srv = await FakeSMTP(greeting=b"554 5.7.1 go away").start()
    with pytest.raises(SmtpError, match="554"):
        await open_conn(srv)
    await srv.stop()


async def test_auth_plain_over_tls_only(tmp_path: Path) -> None:
    srv = await FakeSMTP(
        extensions=("PIPELINING", "STARTTLS"), tls_dir=tmp_path, auth=("relay", "s3cret")
    ).start()
    # issue 15 item 1: a self-signed (unverified) certificate gets the password only when
    # the route explicitly allows it
    with pytest.raises(SmtpError, match="unverified"):
        await open_conn(srv, username="relay", password="s3cret")
    assert srv.authenticated == [] and not any(c.upper().startswith(b"AUTH") for c in srv.commands)
    conn = await open_conn(srv, username="relay", password="s3cret", auth_over_unverified=True)
    assert srv.authenticated == ["relay"]
    await conn.quit()
    # no STARTTLS offered: the password is never sent in clear
    plain = await FakeSMTP(auth=("relay", "s3cret")).start()
    with pytest.raises(SmtpError, match="without TLS"):
        await open_conn(plain, username="relay", password="s3cret")
    assert plain.authenticated == []
    await srv.stop()
    await plain.stop()


async def test_pool_reuses_connection_and_limits() -> None:
    srv = await FakeSMTP().start()
    pool = ConnectionPool("client.test", tls.client_context(), per_destination=2)
    for _ in range(3):
        conn = await pool.get("fake.test", srv.host, srv.port)
        assert [r.code for r in await conn.send("a@a.test", [("b@b.test", {})], MSG)] == [250]
        await pool.put(conn)
    assert srv.connections == 1 and len(srv.transactions) == 3
    assert pool.limit("c.test") is pool.limit("c.test")
    await pool.close()
    await srv.stop()


async def test_connection_refused_is_transient() -> None:
    srv = await FakeSMTP().start()
    port = srv.port
    await srv.stop()
    conn = SmtpConnection("gone.test", "127.0.0.1", port)
    with pytest.raises(SmtpError) as ei:
        await conn.open("client.test")
    assert not ei.value.permanent and ei.value.reply.startswith("451 4.4.1")


async def test_opportunistic_tls_failure_falls_back_to_plaintext(tmp_path: Path) -> None:
    srv = await FakeSMTP(extensions=("PIPELINING", "STARTTLS"), tls_dir=tmp_path, starttls_break=True).start()
    pool = ConnectionPool("client.test", tls.client_context())
    conn = await pool.get("fake.test", srv.host, srv.port)
    assert not conn.tls and srv.connections == 2
    assert [r.code for r in await conn.send("a@a.test", [("b@b.test", {})], MSG)] == [250]
    await pool.put(conn)
    # with TLS required there is no fallback
    with pytest.raises(SmtpError, match="TLS handshake"):
        await pool.get("fake.test", srv.host, srv.port, tls_mode="required")
    await pool.close()
    await srv.stop()


async def test_silent_server_times_out_with_a_transient_error() -> None:
    """A server that greets and then says nothing more: the reply timeout ends the session."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 silent.test ESMTP\r\n")
        await reader.read(1000)  # EHLO, never answered
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = SmtpConnection("silent.test", "127.0.0.1", port)
    conn.reader, conn.writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await conn._reply(5.0)).code == 220
    await conn._write(b"EHLO client.test\r\n")
    with pytest.raises(SmtpError, match="timeout") as e:
        await asyncio.wait_for(conn._reply(0.3), 10)
    assert not e.value.permanent and conn.closed
    server.close()


CHUNKING = ("PIPELINING", "CHUNKING", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES")


async def test_bdat_joins_the_pipelined_group() -> None:
    # The server holds MAIL/RCPT replies until it has read the BDAT: a client that waited
    # for them before sending the chunk would hang.
    srv = await FakeSMTP(extensions=CHUNKING, strict_pipelining=True).start()
    conn = await open_conn(srv)
    res = await asyncio.wait_for(conn.send("a@a.test", [("b@b.test", {}), ("c@b.test", {})], MSG), 5)
    assert [r.code for r in res] == [250, 250]
    assert srv.transactions[0].bdat and srv.transactions[0].data == MSG
    await conn.quit()
    await srv.stop()


async def test_large_message_waits_for_rcpt_replies_before_bdat() -> None:
    from mailhouse.smtpclient import client

    big = MSG + b"x" * client.PIPELINED_BDAT_MAX + b"\r\n"
    srv = await FakeSMTP(extensions=CHUNKING).start()
    conn = await open_conn(srv)
    res = await conn.send("a@a.test", [("perm@b.test", {})], big)
    assert [r.code for r in res] == [550]
    assert not any(c.startswith(b"BDAT") for c in srv.commands)  # not sent for nothing
    res = await conn.send("a@a.test", [("ok@b.test", {})], big)
    assert [r.code for r in res] == [250] and srv.transactions[0].data == big
    await conn.quit()
    await srv.stop()


async def test_pipelined_bdat_with_every_recipient_refused() -> None:
    srv = await FakeSMTP(extensions=CHUNKING).start()
    conn = await open_conn(srv)
    res = await conn.send("a@a.test", [("perm1@c.test", {}), ("temp@c.test", {})], MSG)
    assert [r.code for r in res] == [550, 451]
    assert srv.transactions == []
    res = await conn.send("a@a.test", [("ok@c.test", {})], MSG)  # the session stays in step
    assert [r.code for r in res] == [250] and srv.transactions[0].data == MSG
    await conn.quit()
    await srv.stop()


@pytest.mark.parametrize("extensions", [CHUNKING, ("PIPELINING", "8BITMIME"), ("8BITMIME",)])
async def test_reused_connection_is_checked_with_rset(extensions: tuple[str, ...]) -> None:
    srv = await FakeSMTP(extensions=extensions).start()
    pool = ConnectionPool("client.test", tls.client_context())
    for _ in range(2):
        conn = await pool.get("fake.test", srv.host, srv.port)
        assert [r.code for r in await conn.send("a@a.test", [("b@b.test", {})], MSG)] == [250]
        await pool.put(conn)
    verbs = [c.split(b" ")[0].split(b":")[0].rstrip(b"\r\n").upper() for c in srv.commands]
    assert srv.connections == 1 and len(srv.transactions) == 2
    assert verbs.count(b"RSET") == 1 and verbs.index(b"RSET") < len(verbs) - verbs[::-1].index(b"MAIL") - 1
    await pool.close()
    await srv.stop()


@pytest.mark.parametrize("extensions", [CHUNKING, ("PIPELINING", "8BITMIME"), ("8BITMIME",)])
async def test_dead_cached_connection_is_stale_and_a_fresh_one_works(extensions: tuple[str, ...]) -> None:
    from mailhouse.smtpclient.client import StaleConnection

    srv = await FakeSMTP(extensions=extensions).start()
    pool = ConnectionPool("client.test", tls.client_context())
    conn = await pool.get("fake.test", srv.host, srv.port)
    await conn.send("a@a.test", [("b@b.test", {})], MSG)
    await pool.put(conn)
    srv.drop_connections()
    await asyncio.sleep(0.05)
    cached = await pool.get("fake.test", srv.host, srv.port)
    assert cached is conn
    with pytest.raises(StaleConnection):
        await asyncio.wait_for(cached.send("a@a.test", [("b@b.test", {})], MSG), 10)
    assert len(srv.transactions) == 1  # nothing of the failed attempt was taken
    fresh = await pool.get("fake.test", srv.host, srv.port, fresh=True)
    assert fresh is not conn
    assert [r.code for r in await fresh.send("a@a.test", [("b@b.test", {})], MSG)] == [250]
    assert srv.connections == 2 and len(srv.transactions) == 2
    await pool.close()
    await srv.stop()


# ---------------------------------------------------------------- verified TLS (issue 15 item 1)


def _no_auth(srv: FakeSMTP) -> bool:
    return srv.authenticated == [] and not any(c.upper().startswith(b"AUTH") for c in srv.commands)


async def _verified_pool(ca: TestCA | None) -> ConnectionPool:
    return ConnectionPool(
        "client.test",
        tls.client_context(),
        verify_context=tls.client_context(verify=True, ca_file=ca.ca_file if ca else None),
    )


async def test_required_tls_verifies_and_sends_auth(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    srv = await FakeSMTP(
        extensions=("PIPELINING", "STARTTLS"),
        server_ssl=ca.server_context("smarthost.test"),
        auth=("relay", "pw"),
    ).start()
    pool = await _verified_pool(ca)
    conn = await pool.get(
        "smarthost.test", srv.host, srv.port, tls_mode="required", username="relay", password="pw"
    )
    assert conn.tls and conn.verified and srv.authenticated == ["relay"]
    assert [r.code for r in await conn.send("a@a.test", [("b@b.test", {})], MSG)] == [250]
    await pool.close()
    await srv.stop()


@pytest.mark.parametrize("case", ["wrong-ca", "wrong-name", "system-store-only"])
async def test_required_tls_failed_verification_never_sends_password(tmp_path: Path, case: str) -> None:
    ca, other = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other", "Other CA")
    server_ctx = {
        "wrong-ca": other.server_context("smarthost.test"),
        "wrong-name": ca.server_context("elsewhere.test"),
        "system-store-only": ca.server_context("smarthost.test"),
    }[case]
    srv = await FakeSMTP(
        extensions=("PIPELINING", "STARTTLS"), server_ssl=server_ctx, auth=("relay", "pw")
    ).start()
    pool = await _verified_pool(None if case == "system-store-only" else ca)
    with pytest.raises(TlsVerifyFailed) as ei:
        await pool.get(
            "smarthost.test", srv.host, srv.port, tls_mode="required", username="relay", password="pw"
        )
    assert ei.value.reply.startswith("451 4.7.5 certificate verification failed for smarthost.test")
    assert not ei.value.permanent
    assert _no_auth(srv) and srv.connections == 1  # no plaintext retry either
    await pool.close()
    await srv.stop()


async def test_implicit_tls_verifies(tmp_path: Path) -> None:
    ca, other = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other", "Other CA")

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 smarthost.test ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            writer.write(b"221 bye\r\n" if line.upper().startswith(b"QUIT") else b"250 smarthost.test\r\n")
            await writer.drain()
        writer.close()

    for server_ca, ok in ((ca, True), (other, False)):
        server = await asyncio.start_server(
            session, "127.0.0.1", 0, ssl=server_ca.server_context("smarthost.test")
        )
        port = server.sockets[0].getsockname()[1]
        pool = await _verified_pool(ca)
        if ok:
            conn = await pool.get("smarthost.test", "127.0.0.1", port, tls_mode="implicit")
            assert conn.verified
        else:
            with pytest.raises(TlsVerifyFailed, match="4.7.5"):
                await pool.get("smarthost.test", "127.0.0.1", port, tls_mode="implicit")
        await pool.close()
        server.close()


async def test_encrypt_mode_does_not_verify_and_keeps_the_password(tmp_path: Path) -> None:
    other = TestCA(tmp_path / "other", "Other CA")
    srv = await FakeSMTP(
        extensions=("PIPELINING", "STARTTLS"), server_ssl=other.server_context("x.test"), auth=("relay", "pw")
    ).start()
    pool = await _verified_pool(None)
    conn = await pool.get("smarthost.test", srv.host, srv.port, tls_mode="encrypt")
    assert conn.tls and not conn.verified
    await pool.put(conn)
    with pytest.raises(SmtpError, match="unverified TLS"):
        await pool.get(
            "smarthost.test", srv.host, srv.port, tls_mode="encrypt", username="relay", password="pw"
        )
    assert _no_auth(srv)
    conn = await pool.get(
        "smarthost.test",
        srv.host,
        srv.port,
        tls_mode="encrypt",
        username="relay",
        password="pw",
        auth_over_unverified=True,
    )
    assert srv.authenticated == ["relay"]
    await pool.close()
    await srv.stop()
    # encrypt insists on STARTTLS
    plain = await FakeSMTP().start()
    with pytest.raises(SmtpError, match="TLS required"):
        await pool.get("smarthost.test", plain.host, plain.port, tls_mode="encrypt")
    await plain.stop()
