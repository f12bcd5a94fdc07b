"""AUTHENTICATE continuation lines (RFC 9051 §6.2.2) over real sockets: ``*`` cancels, a bad
response and an over-long line are refused with BAD, and the session stays usable after each;
a client that goes away mid-exchange does not take the server with it."""

from __future__ import annotations

import base64

from tests.imapserver.server_helpers import RawIMAP, tagged
from tests.mailhouse_proc import PASSWORD, MailhouseProcess


def _challenged(mh: MailhouseProcess) -> RawIMAP:
    c = RawIMAP(mh.addr("imaps"))
    c.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert c.line().startswith(b"+"), "no continuation request"
    return c


def _usable(c: RawIMAP) -> None:
    assert tagged(c.cmd("NOOP")).startswith(b"OK")


def test_star_cancels(imap_server: MailhouseProcess) -> None:
    c = _challenged(imap_server)
    c.send(b"*\r\n")
    assert c.until_tagged(b"a1")[-1] == b"a1 BAD Authentication cancelled"
    _usable(c)
    c.close()


def test_bad_base64_is_refused(imap_server: MailhouseProcess) -> None:
    c = _challenged(imap_server)
    c.send(b"!!not base64!!\r\n")
    assert c.until_tagged(b"a1")[-1] == b"a1 BAD Invalid SASL response"
    _usable(c)
    c.close()


def test_over_long_line_is_refused(imap_server: MailhouseProcess) -> None:
    c = _challenged(imap_server)
    c.send(b"A" * (64 * 1024 + 100) + b"\r\n")
    assert c.until_tagged(b"a1")[-1] == b"a1 BAD Invalid SASL response"
    _usable(c)
    c.close()


def test_line_split_over_many_packets_then_login(imap_server: MailhouseProcess) -> None:
    c = _challenged(imap_server)
    line = base64.b64encode(b"\0bob@example.org\0" + PASSWORD.encode()) + b"\r\n"
    for i in range(0, len(line), 3):
        c.send(line[i : i + 3])
    assert tagged(c.until_tagged(b"a1")).startswith(b"OK [CAPABILITY")
    c.close()


def test_client_gone_mid_exchange(imap_server: MailhouseProcess) -> None:
    c = _challenged(imap_server)
    c.send(b"AAAA")  # half a line, then the connection closes
    c.close()
    c = RawIMAP(imap_server.addr("imaps"))  # the server still serves
    c.login("bob")
    c.close()
