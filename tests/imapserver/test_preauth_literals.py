"""Issue 12 item 3 over real sockets: before authentication an IMAP literal is limited to a few
KB (``PRE_AUTH_MAX_LITERAL``), refused before any ``+`` is sent, so anonymous clients cannot make
the server buffer messages; and issue 12 item 12: CREATE/RENAME refuse LIST wildcards in names.

Memory is read from ``/proc/<pid>/status`` (VmRSS) of the ``mailhouse serve`` process the
fixture started (one worker: every connection is served by that process)."""

from __future__ import annotations

import socket

from tests.imapserver.server_helpers import RawIMAP, tagged
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

LITERAL = 40_000_000  # the size of the attack in issue 12 item 3
CONNECTIONS = 5
RSS_BOUND_KIB = 24 * 1024  # far below one 40 MB literal; today's code grew by ~200 MB


def _rss_kib(mh: MailhouseProcess) -> int:
    assert mh.proc is not None
    with open(f"/proc/{mh.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_until_closed(sock: socket.socket, total: int) -> int:
    """Send up to ``total`` octets in 1 MB chunks as a hostile client would; stop when the
    server closes. Returns how much was sent."""
    chunk = b"x" * (1 << 20)
    sent = 0
    sock.settimeout(5)
    try:
        while sent < total:
            n = min(len(chunk), total - sent)
            sock.sendall(chunk[:n])
            sent += n
    except OSError:  # reset/broken pipe/timeout: the server stopped reading
        pass
    return sent


def test_preauth_sync_literals_refused_before_continuation(imap_server: MailhouseProcess) -> None:
    before = _rss_kib(imap_server)
    conns = [RawIMAP(imap_server.addr("imap"), tls=False) for _ in range(CONNECTIONS)]
    replies = []
    try:
        for c in conns:
            c.send(b"a APPEND INBOX {%d}\r\n" % LITERAL)
            line = c.line()
            replies.append(line)
            if line.startswith(b"+"):
                # Invited to send it (today's code): a hostile client sends all but the last
                # octet, so the server holds the whole literal while we measure.
                c.send(b"x" * (LITERAL - 1))
        grown = _rss_kib(imap_server) - before
        assert grown < RSS_BOUND_KIB, f"RSS grew by {grown} KiB; replies {replies}"
        assert all(r.startswith(b"a NO [TOOBIG]") for r in replies), replies  # never "+ Ready"
        for c in conns:  # each connection still works (nothing of the literal was sent)
            assert tagged(c.cmd("NOOP")).startswith(b"OK")
    finally:
        for c in conns:
            c.close()


def test_preauth_nonsync_literals_refused_and_connection_closed(imap_server: MailhouseProcess) -> None:
    before = _rss_kib(imap_server)
    conns = [RawIMAP(imap_server.addr("imap"), tls=False) for _ in range(CONNECTIONS)]
    try:
        sent = []
        for c in conns:
            c.send(b"a APPEND INBOX {%d+}\r\n" % LITERAL)
            sent.append(_send_until_closed(c.sock, LITERAL - 1))
        grown = _rss_kib(imap_server) - before
        for c in conns:
            c.sock.settimeout(10)
            assert c.line().startswith(b"a BAD [TOOBIG]")  # RFC 7888 §4
            assert c.line().startswith(b"* BYE")
        assert grown < RSS_BOUND_KIB, f"RSS grew by {grown} KiB (sent {sent})"
    finally:
        for c in conns:
            c.close()


def test_preauth_small_literals_still_log_in_and_limit_grows_after(imap_server: MailhouseProcess) -> None:
    c = RawIMAP(imap_server.addr("imaps"))
    try:
        # LOGIN with literals (as clients do for passwords with specials) is within the limit
        user = b"walter@example.org"
        c.send(b"a LOGIN {%d}\r\n" % len(user))
        assert c.line().startswith(b"+")
        c.send(user + b" {%d+}\r\n" % len(PASSWORD) + PASSWORD.encode() + b"\r\n")
        assert c.until_tagged(b"a")[-1].startswith(b"a OK")
        # authenticated: a message of 100 KB (over the pre-login limit) is invited and stored
        msg = b"Subject: big\r\n\r\n" + b"y" * 100_000 + b"\r\n"
        c.send(b"b APPEND INBOX {%d}\r\n" % len(msg))
        assert c.line().startswith(b"+")
        c.send(msg + b"\r\n")
        assert c.until_tagged(b"b")[-1].startswith(b"b OK")
        # UNAUTHENTICATE (RFC 8437): the pre-login limit applies again
        assert tagged(c.cmd("UNAUTHENTICATE")).startswith(b"OK")
        c.send(b"d APPEND INBOX {%d}\r\n" % len(msg))
        assert c.line().startswith(b"d NO [TOOBIG]")
    finally:
        c.close()


def test_create_rename_refuse_list_wildcards(imap_server: MailhouseProcess) -> None:
    c = RawIMAP(imap_server.addr("imaps"))
    c.login("walter")
    try:
        for name in ("a%b", "x*", "*", "%", "Lists/*/y", "wild%/"):
            r = c.cmd(f'CREATE "{name}"')
            assert tagged(r).startswith(b"NO [CANNOT]"), (name, r)
        assert tagged(c.cmd("CREATE plain")).startswith(b"OK")
        for name in ("pl%ain", "pl*ain", "plain/sub*"):
            r = c.cmd(f'RENAME plain "{name}"')
            assert tagged(r).startswith(b"NO [CANNOT]"), (name, r)
        # no mailbox with a wildcard was made; LIST patterns keep working
        r = c.cmd('LIST "" "*"')
        assert not any(b"%" in ln or b"*" in ln.split(b" ", 4)[-1] for ln in r if ln.startswith(b"* LIST"))
        assert any(ln.endswith(b" plain") for ln in r), r
        r = c.cmd('LIST "" "pl%"')
        assert [ln for ln in r if ln.startswith(b"* LIST")] == [b'* LIST (\\HasNoChildren) "/" plain'], r
        assert tagged(c.cmd("RENAME plain plain2")).startswith(b"OK")
        assert tagged(c.cmd("DELETE plain2")).startswith(b"OK")
    finally:
        c.close()
