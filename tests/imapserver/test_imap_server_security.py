"""Named security regression tests for the IMAP server (issue 3 §5), over real sockets.

Each test can fail: it checks the exact refusal and that the server keeps serving."""

from __future__ import annotations

import imaplib
import socket
import time

import pytest

from tests.imapserver.server_helpers import RawIMAP, login, tagged, tls_ctx
from tests.mailhouse_proc import PASSWORD, MailhouseProcess


def _rss_kib(mh: MailhouseProcess) -> int:
    assert mh.proc is not None
    for line in open(f"/proc/{mh.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_huge_literal_refused_before_allocation(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("alice")
    before = _rss_kib(imap_server)
    raw.send(b"a1 APPEND INBOX {4294967296}\r\n")
    line = raw.line()
    assert line.startswith(b"a1 NO [TOOBIG]"), line  # no "+" continuation was sent
    raw.send(b"a2 LOGIN x {99999999999999999999999}\r\n")
    assert raw.line().startswith(b"a2 NO [TOOBIG]")
    assert _rss_kib(imap_server) - before < 50 * 1024  # nothing near 4 GiB was allocated
    assert tagged(raw.cmd("NOOP")).startswith(b"OK")  # the connection is still usable
    raw.close()


def test_huge_nonsync_literal_closes_connection(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("alice")
    raw.send(b"a1 APPEND INBOX {4294967296+}\r\n")
    assert raw.line().startswith(b"a1 BAD [TOOBIG]")  # RFC 7888 §4
    assert raw.line().startswith(b"* BYE")
    raw.close()


def test_10000_nested_parens_bad_and_server_survives(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("alice")
    assert tagged(raw.cmd("SELECT INBOX")).startswith(b"OK")
    deep = b"(" * 10000 + b"ALL" + b")" * 10000
    r = raw.cmd(b"SEARCH " + deep)
    assert tagged(r).startswith(b"BAD"), r[-1][:200]
    r = raw.cmd(b"FETCH 1:* " + b"(" * 10000 + b"FLAGS" + b")" * 10000)
    assert tagged(r).startswith(b"BAD")
    assert tagged(raw.cmd("NOOP")).startswith(b"OK")
    other = login(imap_server, "bob")  # another client is served
    assert other.select("INBOX")[0] == "OK"
    other.logout()
    raw.close()


def test_nul_in_quoted_string_bad(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    r = raw.cmd(b'LOGIN "alice@example.org\x00" "x"')
    assert tagged(r).startswith(b"BAD")
    raw.login("alice")
    assert tagged(raw.cmd(b'CREATE "a\x00b"')).startswith(b"BAD")
    assert tagged(raw.cmd(b"CREATE {3+}\r\na\x00b")).startswith(b"BAD")  # NUL in a literal too
    raw.close()


def test_overlong_line_bad_then_next_command_works(imap_server: MailhouseProcess) -> None:
    raw = RawIMAP(imap_server.addr("imaps"))
    raw.login("alice")
    raw.send(b"a1 NOOP " + b"x" * (70 * 1024) + b"\r\n")
    line = raw.line()
    assert b"BAD" in line and b"too long" in line, line
    assert tagged(raw.cmd("NOOP")).startswith(b"OK")
    raw.close()


def test_plaintext_after_starttls_discarded(imap_server: MailhouseProcess) -> None:
    sock = socket.create_connection(imap_server.addr("imap"), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    # the injected LOGOUT/CAPABILITY must never run inside the TLS session (CVE-2011-0411 class)
    sock.sendall(b"s1 STARTTLS\r\ninj1 CAPABILITY\r\ninj2 LOGOUT\r\n")
    assert f.readline().startswith(b"s1 OK")
    tls = tls_ctx().wrap_socket(sock)
    tls.sendall(b"t1 NOOP\r\n")
    buf = b""
    while b"t1 " not in buf:
        chunk = tls.recv(4096)
        assert chunk, buf
        buf += chunk
    assert b"inj1" not in buf and b"inj2" not in buf and b"BYE" not in buf
    assert b"t1 OK" in buf
    tls.close()


def test_failed_logins_delayed_shared_throttle(imap_server: MailhouseProcess) -> None:
    c = imaplib.IMAP4_SSL(*imap_server.addr("imaps"), ssl_context=tls_ctx())
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error):
            c.login("erin@example.org", "nope")
        times.append(time.monotonic() - t0)
    assert times[1] >= 0.45 and times[2] >= 0.95, times  # 0.5 s, then 1 s (doubling)
    # the same per-IP penalty applies to another protocol (POP3 shares accounts.throttle)
    import poplib

    p = poplib.POP3_SSL(*imap_server.addr("pop3s"), context=tls_ctx())
    t0 = time.monotonic()
    p.user("erin@example.org")
    with pytest.raises(poplib.error_proto):
        p.pass_("nope")
    assert time.monotonic() - t0 >= 1.9
    p.quit()
    assert c.login("erin@example.org", PASSWORD)[0] == "OK"  # success clears the IP's penalty
    c.logout()


def test_account_isolation(imap_server: MailhouseProcess) -> None:
    alice = login(imap_server, "alice")
    assert alice.create("AliceSecret")[0] == "OK"
    bob = login(imap_server, "bob")
    names = b" ".join(bob.list()[1])
    assert b"AliceSecret" not in names
    for name in (
        "AliceSecret",
        "../alice/INBOX",
        "../alice@example.org/INBOX",
        "/AliceSecret",
        "alice@example.org/INBOX",
        "#alice/INBOX",
        "~alice/INBOX",
    ):
        typ, data = bob.select(f'"{name}"')
        assert typ == "NO", (name, data)
    for bad in ("../alice", "a/../b", "/abs", "a//b", "./x", ".."):
        typ, data = bob.create(f'"{bad}"')
        assert typ == "NO" and b"[CANNOT]" in data[0], (bad, data)
    typ, data = bob.create("&Jjo")  # invalid modified UTF-7
    assert typ == "NO" and b"[CANNOT]" in data[0], data
    typ, data = bob.status("AliceSecret", "(MESSAGES)")
    assert typ == "NO"
    bob.select("INBOX")
    bob.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
    typ, data = bob.copy("1:*", "AliceSecret")
    assert typ == "NO" and b"[TRYCREATE]" in data[0]
    alice.logout()
    bob.logout()
