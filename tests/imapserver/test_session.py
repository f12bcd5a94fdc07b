"""IMAP session basics over real sockets: greeting, capabilities per state, LOGIN over imaps
and after STARTTLS, LOGINDISABLED on plaintext, AUTHENTICATE (SASL-IR), ENABLE, ID, NAMESPACE,
COMPRESS=DEFLATE, unknown commands, state gate."""

from __future__ import annotations

import base64
import imaplib
import zlib

import imapclient
import pytest

from tests.imapserver.server_helpers import RawIMAP, tagged, tls_ctx
from tests.mailhouse_proc import PASSWORD, MailhouseProcess


def test_imaps_login_and_capabilities(imap_server: MailhouseProcess) -> None:
    c = imaplib.IMAP4_SSL(*imap_server.addr("imaps"), ssl_context=tls_ctx())
    pre = set(c.capabilities)
    assert {"IMAP4REV1", "IMAP4REV2", "AUTH=PLAIN", "AUTH=SCRAM-SHA-256", "SASL-IR"} <= pre
    assert "STARTTLS" not in pre and "LOGINDISABLED" not in pre
    typ, data = c.login("alice@example.org", PASSWORD)
    assert typ == "OK" and b"[CAPABILITY " in data[0]
    typ, data = c.capability()
    post = set(data[0].decode().split())
    for cap in (
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "ESEARCH",
        "SORT",
        "QUOTA",
        "METADATA",
        "NOTIFY",
        "COMPRESS=DEFLATE",
        "LIST-STATUS",
        "SPECIAL-USE",
        "BINARY",
        "CATENATE",
        "URLAUTH",
    ):
        assert cap in post, cap
    c.logout()


def test_plaintext_logindisabled_then_starttls(imap_server: MailhouseProcess) -> None:
    c = imaplib.IMAP4(*imap_server.addr("imap"))
    assert "LOGINDISABLED" in c.capabilities and "STARTTLS" in c.capabilities
    assert not any(x.startswith("AUTH=") for x in c.capabilities)
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        c.login("alice@example.org", PASSWORD)
    c.starttls(ssl_context=tls_ctx())
    assert "LOGINDISABLED" not in c.capabilities and "STARTTLS" not in c.capabilities
    assert c.login("alice@example.org", PASSWORD)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_authenticate_plain_sasl_ir_and_scram(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    ir = base64.b64encode(b"\0bob@example.org\0" + PASSWORD.encode()).decode()
    r = raw.cmd(f"AUTHENTICATE PLAIN {ir}")
    assert tagged(r).startswith(b"OK [CAPABILITY"), r
    raw.close()
    # SCRAM-SHA-256 with SASL-IR, challenges as "+ base64" continuations (RFC 9051 §6.2.2)
    from mailhouse.proto import sasl

    scram = sasl.ScramSha256Client("carol@example.org", PASSWORD)
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.send(b"s1 AUTHENTICATE SCRAM-SHA-256 " + base64.b64encode(scram.first()) + b"\r\n")
    server_first = raw.line()
    assert server_first.startswith(b"+ ")
    raw.send(base64.b64encode(scram.final(base64.b64decode(server_first[2:]))) + b"\r\n")
    nxt = raw.line()
    if nxt.startswith(b"+ "):  # server-final as a challenge, answered with an empty response
        scram.verify(base64.b64decode(nxt[2:]))
        raw.send(b"\r\n")
        nxt = raw.line()
    assert nxt.startswith(b"s1 OK"), nxt
    raw.close()
    # imapclient also works (PLAIN via its plain_login)
    client = imapclient.IMAPClient(
        imap_server.host, port=imap_server.ports["imaps"], ssl=True, ssl_context=tls_ctx()
    )
    client.plain_login("carol@example.org", PASSWORD)
    assert client.select_folder("INBOX")[b"UIDVALIDITY"] > 0
    client.logout()


def test_failed_login_is_refused_and_delayed(imap_server: MailhouseProcess) -> None:
    import time

    c = imaplib.IMAP4_SSL(*imap_server.addr("imaps"), ssl_context=tls_ctx())
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login("dave@example.org", "wrong")
    t0 = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error):
        c.login("dave@example.org", "wrong again")
    assert time.monotonic() - t0 >= 0.45  # shared per-IP throttle: 0.5 s after the first failure
    t0 = time.monotonic()
    assert c.login("dave@example.org", PASSWORD)[0] == "OK"  # still delayed, but succeeds
    assert time.monotonic() - t0 >= 0.9
    c.logout()


def test_unknown_command_bad_without_disconnect_and_state_gate(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    assert tagged(raw.cmd("FROBNICATE now")).startswith(b"BAD")
    assert tagged(raw.cmd("SELECT INBOX")).startswith(b"BAD")  # not authenticated yet
    assert tagged(raw.cmd("NOOP")).startswith(b"OK")
    raw.login("alice")
    assert tagged(raw.cmd("FETCH 1 FLAGS")).startswith(b"BAD")  # nothing selected
    assert tagged(raw.cmd("LOGIN a b")).startswith(b"BAD")  # already authenticated
    r = raw.cmd("LOGOUT")
    assert r[0].startswith(b"* BYE") and tagged(r).startswith(b"OK")
    raw.close()


def test_enable_id_namespace(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("alice")
    r = raw.cmd("ENABLE QRESYNC UTF8=ACCEPT X-UNKNOWN")
    assert r[0] == b"* ENABLED CONDSTORE QRESYNC UTF8=ACCEPT"
    assert raw.cmd("ENABLE CONDSTORE")[0] == b"* ENABLED"  # already on: not listed again
    r = raw.cmd('ID ("name" "pytest")')
    assert r[0].startswith(b'* ID ("name" "Mailhouse"')
    assert (
        raw.cmd("NAMESPACE")[0] == b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))'
    )  # issue 13 §3
    raw.close()


def test_compress_deflate_round_trip(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("alice")
    assert tagged(raw.cmd("COMPRESS DEFLATE")).startswith(b"OK")
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    dec = zlib.decompressobj(-15)

    def send(line: bytes) -> None:
        raw.send(comp.compress(line) + comp.flush(zlib.Z_SYNC_FLUSH))

    def read_until(tag: bytes) -> bytes:
        out = b""
        while b"\r\n" + tag + b" " not in b"\r\n" + out:
            out += dec.decompress(raw.sock.recv(65536))
        return out

    send(b'c1 LIST "" *\r\nc2 CAPABILITY\r\n')  # pipelined, compressed
    out = read_until(b"c2")
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in out and b"c1 OK" in out
    assert b"COMPRESS=DEFLATE" not in out.split(b"* CAPABILITY", 1)[1].split(b"\r\n")[0]
    send(b"c3 COMPRESS DEFLATE\r\n")
    assert b"c3 NO [COMPRESSIONACTIVE]" in read_until(b"c3")
    send(b"c4 LOGOUT\r\n")
    assert b"c4 OK" in read_until(b"c4")
    raw.close()
