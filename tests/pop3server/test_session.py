"""POP3 sessions driven by poplib (and a raw socket client) against a real server.

Covers RFC 1939 commands and semantics: STAT/LIST octet counts equal what RETR sends,
UIDL stable across sessions and equal to `<uidvalidity>.<uid>`, TOP, DELE only at QUIT,
RSET, wrong-state and malformed commands, pipelining, messages expunged meanwhile,
STLS and pop3s (implicit TLS) sessions, AUTH PLAIN / LOGIN / SCRAM-SHA-256.
"""

from __future__ import annotations

import base64
import imaplib
import poplib
import time
from collections.abc import Callable

import pytest

from mailhouse.pop3server.maildrop import READ_AHEAD_COUNT
from mailhouse.proto import sasl
from mailhouse.store.api import Store
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from .conftest import POP3From, RawPop3, deliver, inbox_of, login, new_account, sample, unverified, with_store

Client = Callable[[], POP3From]


def retr_bytes(lines: list[bytes]) -> bytes:
    return b"".join(ln + b"\r\n" for ln in lines)


def login_retry(make: Client, user: str, timeout: float = 5.0) -> POP3From:
    """Log in, retrying while the previous (just dropped) session still holds the lock."""
    end = time.monotonic() + timeout
    while True:
        c = make()
        try:
            login(c, user)
            return c
        except poplib.error_proto as e:
            c.close()
            if b"[IN-USE]" not in e.args[0] or time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_capa_when_plaintext_login_allowed(client: Client) -> None:
    c = client()
    assert c.getwelcome().startswith(b"+OK")
    caps = c.capa()
    for tag in (
        "TOP",
        "UIDL",
        "USER",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "STLS",
        "IMPLEMENTATION",
    ):
        assert tag in caps
    assert caps["SASL"] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
    assert caps["EXPIRE"] == ["NEVER"]
    assert caps["LOGIN-DELAY"] == ["0"]
    assert caps["UTF8"] == ["USER"]
    assert c.quit().startswith(b"+OK")


def test_full_session_counts_retr_top_dele_rset_quit(
    pop3_plain: MailhouseProcess, account: str, client: Client
) -> None:
    deliver(pop3_plain, account, [sample(i) for i in range(1, 4)])
    c = client()
    assert login(c, account).startswith(b"+OK")
    count, total = c.stat()
    assert count == 3
    resp, listing, _ = c.list()
    sizes = {int(n): int(s) for n, s in (ln.split() for ln in listing)}
    assert sum(sizes.values()) == total
    _, uidl_lines, _ = c.uidl()
    uidls = dict(ln.decode().split() for ln in uidl_lines)
    for n in (1, 2, 3):
        resp, lines, octets = c.retr(n)
        body = retr_bytes(lines)  # poplib removed the dot-stuffing
        # RFC 1939 §5: the octet count is what RETR sends; both in +OK and in LIST
        assert resp == f"+OK {sizes[n]} octets".encode()
        assert len(body) == sizes[n]
        assert body.endswith(sample(n).split(b"\r\n\r\n", 1)[1])
        assert b"\r\n.leading dot\r\n" in body
        assert c.list(n) == f"+OK {n} {sizes[n]}".encode()
    # TOP: header, blank line, N body lines (RFC 1939 §7)
    _, top0, _ = c.top(1, 0)
    assert top0[-1] == b"" and b"Subject: message 1" in top0
    _, top1, _ = c.top(1, 1)
    assert top1 == [*top0, b"Body of message 1"]
    _, top9, _ = c.top(1, 99)
    assert retr_bytes(top9) == retr_bytes(c.retr(1)[1])
    # DELE marks; the message disappears from the listing, STAT and further commands
    assert c.dele(2).startswith(b"+OK")
    assert c.stat() == (2, total - sizes[2])
    with pytest.raises(poplib.error_proto, match="already deleted"):
        c.dele(2)
    for cmd in (lambda: c.retr(2), lambda: c.list(2), lambda: c.uidl(2), lambda: c.top(2, 0)):
        with pytest.raises(poplib.error_proto):
            cmd()
    assert [ln.split()[0] for ln in c.list()[1]] == [b"1", b"3"]
    assert c.rset().startswith(b"+OK")  # RFC 1939 §5: unmark all
    assert c.stat() == (3, total)
    c.dele(2)
    assert c.quit().startswith(b"+OK")
    # UPDATE removed message 2; the survivors keep their UIDLs (stable across sessions)
    c2 = client()
    login(c2, account)
    assert c2.stat() == (2, total - sizes[2])
    uidls2 = dict(ln.decode().split() for ln in c2.uidl()[1])
    assert sorted(uidls2.values()) == sorted([uidls["1"], uidls["3"]])
    assert c2.uidl(2) == f"+OK 2 {uidls['3']}".encode()
    c2.quit()


def test_uidl_is_uidvalidity_dot_uid(pop3_plain: MailhouseProcess, account: str, client: Client) -> None:
    deliver(pop3_plain, account, [sample(1), sample(2)])

    async def uids(store: Store) -> tuple[int, list[int]]:
        mb = await inbox_of(store, account)
        return mb.uidvalidity, [m.uid for m in await store.list_messages(mb.id)]

    uidvalidity, store_uids = with_store(pop3_plain, uids)
    c = client()
    login(c, account)
    got = [ln.decode().split()[1] for ln in c.uidl()[1]]
    assert got == [f"{uidvalidity}.{u}" for u in sorted(store_uids)]  # the identity IMAP uses
    c.quit()


def test_octet_counts_for_bare_lf_and_unterminated_messages(
    pop3_plain: MailhouseProcess, account: str, client: Client
) -> None:
    """Stored blobs with bare LF (or no final newline) are sent CRLF-normalised; the
    octet counts in STAT/LIST/RETR describe exactly those octets."""
    blobs = [
        b"Subject: lf\n\nline one\n.dot\nlast",
        b"Subject: crlf\r\n\r\nbody\r\n",
        b"Subject: cr\r\n\r\nend\r",
    ]

    async def put(store: Store) -> None:
        mb = await inbox_of(store, account)
        from mailhouse.store.api import NewMessage

        for b in blobs:
            await store.deliver(b, [NewMessage(mb.id, "", len(b))])

    deliver(pop3_plain, account, [sample(1)])  # creates the INBOX
    with_store(pop3_plain, put)
    c = client()
    login(c, account)
    _, listing, _ = c.list()
    sizes = [int(ln.split()[1]) for ln in listing]
    for n, size in enumerate(sizes, 1):
        raw = RawRetr.fetch(c, n)
        assert len(raw) == size
        assert b"\n" not in raw.replace(b"\r\n", b"")
    assert RawRetr.fetch(c, 2) == b"Subject: lf\r\n\r\nline one\r\n.dot\r\nlast\r\n"
    assert c.stat()[1] == sum(sizes)
    c.quit()


class RawRetr:
    @staticmethod
    def fetch(c: poplib.POP3, n: int) -> bytes:
        resp, lines, _ = c.retr(n)
        size = int(resp.split()[1])
        body = retr_bytes(lines)
        assert len(body) == size
        return body


def test_dropped_connection_deletes_nothing(
    pop3_plain: MailhouseProcess, account: str, client: Client
) -> None:
    deliver(pop3_plain, account, [sample(i) for i in range(3)])
    c = client()
    login(c, account)
    for n in (1, 2, 3):
        c.dele(n)
    c.close()  # no QUIT: RFC 1939 §6, no UPDATE state
    c2 = login_retry(client, account)
    assert c2.stat()[0] == 3
    c2.quit()


def test_message_expunged_meanwhile(pop3_plain: MailhouseProcess, account: str, client: Client) -> None:
    """Another client (IMAP, another worker) expunges a message under a POP3 session."""
    deliver(pop3_plain, account, [sample(i) for i in range(1, 4)])
    c = client()
    login(c, account)
    count, total = c.stat()

    async def expunge_second(store: Store) -> None:
        mb = await inbox_of(store, account)
        uids = sorted(m.uid for m in await store.list_messages(mb.id))
        await store.expunge(mb.id, [uids[1]])

    with_store(pop3_plain, expunge_second)
    with pytest.raises(poplib.error_proto, match="expunged"):
        c.retr(2)
    with pytest.raises(poplib.error_proto, match="expunged"):
        c.top(2, 0)
    assert c.stat() == (count, total)  # the session's snapshot is unchanged (RFC 1939 §5)
    assert c.retr(3)[0].startswith(b"+OK")
    assert c.noop().startswith(b"+OK")
    c.dele(2)
    c.dele(1)
    assert c.quit().startswith(b"+OK")
    c2 = client()
    login(c2, account)
    assert c2.stat()[0] == 1
    c2.quit()


def test_wrong_state(pop3_plain: MailhouseProcess, account: str) -> None:
    r = RawPop3(*pop3_plain.addr("pop3"))
    for cmd in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 0", b"UIDL"):
        assert r.cmd(cmd).startswith(b"-ERR"), cmd  # RFC 1939 §3: TRANSACTION only
    assert r.cmd(b"PASS " + PASSWORD.encode()).startswith(b"-ERR")  # PASS only right after USER
    assert r.cmd(b"USER " + account.encode()) == b"+OK\r\n"
    assert r.cmd(b"NOOP").startswith(b"-ERR")
    assert r.cmd(b"PASS " + PASSWORD.encode()).startswith(b"-ERR")  # USER/PASS chain was broken
    assert r.cmd(b"USER " + account.encode()).startswith(b"+OK")
    assert r.cmd(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
    for cmd in (b"USER x", b"PASS x", b"AUTH PLAIN", b"STLS", b"UTF8", b"APOP x y"):
        assert r.cmd(cmd).startswith(b"-ERR"), cmd  # AUTHORIZATION only (or never)
    assert r.cmd(b"RETR 0").startswith(b"-ERR")
    assert r.cmd(b"RETR 1").startswith(b"-ERR")  # empty maildrop
    assert r.cmd(b"LIST x").startswith(b"-ERR")
    assert r.cmd(b"STAT") == b"+OK 0 0\r\n"
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()


def test_unknown_and_malformed_commands(pop3_plain: MailhouseProcess) -> None:
    r = RawPop3(*pop3_plain.addr("pop3"))
    assert r.cmd(b"XYZZY").startswith(b"-ERR")
    assert r.cmd(b"APOP alice 0123456789abcdef0123456789abcdef").startswith(b"-ERR")  # no APOP
    assert r.cmd(b"CAPA extra").startswith(b"-ERR")
    assert r.cmd(b"").startswith(b"-ERR")
    assert r.cmd(b"capa").startswith(b"+OK")  # keywords are case-insensitive
    assert b"TOP\r\n" in b"".join(ln + b"\r\n" for ln in r.multiline())
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()


def test_long_lines(pop3_plain: MailhouseProcess, account: str) -> None:
    """RFC 2449 §4: command lines ≤ 255 octets; longer ones get one -ERR and are dropped."""
    r = RawPop3(*pop3_plain.addr("pop3"))
    assert r.cmd(b"USER " + b"a" * 300).startswith(b"-ERR")
    assert r.cmd(b"NOOP " + b"x" * 200_000).startswith(b"-ERR")  # never buffered whole
    assert r.cmd(b"USER " + account.encode()) == b"+OK\r\n"  # the session goes on
    assert r.cmd(b"PASS " + PASSWORD.encode()).startswith(b"+OK")
    assert r.cmd(b"LIST " + b"9" * 300).startswith(b"-ERR")
    assert r.cmd(b"RETR 99999999999999999999").startswith(b"-ERR")
    assert r.cmd(b"STAT").startswith(b"+OK")
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()


def test_pipelining(pop3_plain: MailhouseProcess, account: str) -> None:
    """RFC 2449 §6.6: a batch of commands in one write; answers in order."""
    deliver(pop3_plain, account, [sample(1), sample(2)])
    r = RawPop3(*pop3_plain.addr("pop3"))
    batch = [
        b"USER " + account.encode(),
        b"PASS " + PASSWORD.encode(),
        b"STAT",
        b"RETR 1",
        b"DELE 1",
        b"LIST",
        b"QUIT",
    ]
    r.send(b"".join(c + b"\r\n" for c in batch))
    assert r.line() == b"+OK\r\n"
    assert r.line().startswith(b"+OK Logged in")
    stat = r.line().split()
    assert stat[:2] == [b"+OK", b"2"]
    assert r.line().startswith(b"+OK")
    assert b"Subject: message 1" in b"".join(r.multiline())
    assert r.line().startswith(b"+OK")
    assert r.line().startswith(b"+OK")
    assert len(r.multiline()) == 1
    assert r.line().startswith(b"+OK")
    r.close()


def test_stls_session(pop3_strict: MailhouseProcess) -> None:
    user = new_account(pop3_strict)
    deliver(pop3_strict, user, [sample(1)])
    c = poplib.POP3(*pop3_strict.addr("pop3"), timeout=30)
    assert "STLS" in c.capa() and "USER" not in c.capa()
    assert c.stls(unverified()).startswith(b"+OK")
    caps = c.capa()
    assert "STLS" not in caps and "USER" in caps and "SASL" in caps
    assert login(c, user).startswith(b"+OK")
    assert c.stat()[0] == 1
    assert b"Subject: message 1" in retr_bytes(c.retr(1)[1])
    c.dele(1)
    c.quit()
    c2 = poplib.POP3(*pop3_strict.addr("pop3"), timeout=30)
    c2.stls(unverified())
    login(c2, user)
    assert c2.stat() == (0, 0)
    c2.quit()


def test_pop3s_session(pop3_strict: MailhouseProcess) -> None:
    user = new_account(pop3_strict)
    deliver(pop3_strict, user, [sample(1), sample(2)])
    c = poplib.POP3_SSL(*pop3_strict.addr("pop3s"), context=unverified(), timeout=30)
    assert c.getwelcome().startswith(b"+OK")
    caps = c.capa()
    assert "STLS" not in caps and "USER" in caps
    with pytest.raises(poplib.error_proto):
        c._shortcmd("STLS")  # RFC 2595 §4: not once TLS is active
    login(c, user)
    assert c.stat()[0] == 2
    assert len(c.list()[1]) == 2
    c.quit()


def _auth(c: poplib.POP3, first: str) -> bytes:
    c._putcmd(first)
    return c._getline()[0]


def test_auth_plain_with_initial_response(pop3_plain: MailhouseProcess, account: str, client: Client) -> None:
    c = client()
    ir = base64.b64encode(sasl.plain_initial("", account, PASSWORD)).decode()
    assert _auth(c, f"AUTH PLAIN {ir}").startswith(b"+OK")  # RFC 5034 §4: SASL-IR style
    assert c.stat() == (0, 0)
    c.quit()


def test_auth_plain_with_challenge_and_wrong_password(account: str, client: Client) -> None:
    c = client()
    assert _auth(c, "AUTH PLAIN") == b"+ "
    c._putcmd(base64.b64encode(sasl.plain_initial("", account, "wrong")).decode())
    assert c._getline()[0] == b"-ERR [AUTH] Authentication failed"
    assert _auth(c, "AUTH PLAIN") == b"+ "
    c._putcmd(base64.b64encode(sasl.plain_initial("", account, PASSWORD)).decode())
    assert c._getline()[0].startswith(b"+OK")
    c.quit()


def test_auth_login_and_cancel(account: str, client: Client) -> None:
    c = client()
    assert _auth(c, "AUTH LOGIN") == b"+ " + base64.b64encode(b"Username:")
    c._putcmd("*")  # RFC 5034 §4: cancel
    assert c._getline()[0].startswith(b"-ERR")
    assert _auth(c, "AUTH LOGIN").startswith(b"+ ")
    c._putcmd(base64.b64encode(account.encode()).decode())
    assert c._getline()[0].startswith(b"+ ")
    c._putcmd(base64.b64encode(PASSWORD.encode()).decode())
    assert c._getline()[0].startswith(b"+OK")
    c.quit()


def test_auth_scram_sha256(account: str, client: Client) -> None:
    c = client()
    scram = sasl.ScramSha256Client(account, PASSWORD)
    line = _auth(c, "AUTH SCRAM-SHA-256 " + base64.b64encode(scram.first()).decode())
    assert line.startswith(b"+ ")
    c._putcmd(base64.b64encode(scram.final(base64.b64decode(line[2:]))).decode())
    line = c._getline()[0]
    assert line.startswith(b"+ ")
    scram.verify(base64.b64decode(line[2:]))  # mutual authentication
    c._putcmd("")
    assert c._getline()[0].startswith(b"+OK")
    c.quit()


def test_auth_unknown_mechanism_and_bad_base64(client: Client) -> None:
    c = client()
    assert _auth(c, "AUTH CRAM-MD5").startswith(b"-ERR")
    assert _auth(c, "AUTH PLAIN %%%").startswith(b"-ERR")
    assert _auth(c, "AUTH PLAIN") == b"+ "
    c._putcmd("not base64!")
    assert c._getline()[0].startswith(b"-ERR")
    assert c.capa()  # still in AUTHORIZATION and answering
    c.quit()


def test_read_ahead_message_expunged_over_imap(
    pop3_plain: MailhouseProcess, account: str, client: Client
) -> None:
    """An IMAP session expunges messages under a POP3 session (RFC 1939 §5 snapshot).

    A message this session already read ahead is still sent as it was (the same octets,
    never other data); one not read yet is `-ERR`; STAT/LIST/UIDL keep the snapshot; DELE
    of an expunged message is accepted and QUIT's UPDATE succeeds, also with an expunged
    message that was retrieved and not deleted (its \\Seen goes nowhere)."""
    n = READ_AHEAD_COUNT + 8
    msgs = [sample(i) for i in range(1, n + 1)]
    deliver(pop3_plain, account, msgs)
    c = client()
    login(c, account)
    stat = c.stat()
    uidl = c.uidl()[1]
    lst = c.list()[1]
    assert stat[0] == n
    c.retr(1)  # reads messages 1..READ_AHEAD_COUNT in one batch
    imap = imaplib.IMAP4(*pop3_plain.addr("imap"))
    imap.login(account, PASSWORD)
    imap.select("INBOX")
    for seq in (n, 3, 2):  # descending: sequence numbers stay valid while expunging
        imap.store(str(seq), "+FLAGS.SILENT", r"(\Deleted)")
    imap.expunge()
    imap.logout()
    resp, lines, _ = c.retr(2)  # read ahead before the expunge: the same message
    assert resp.startswith(b"+OK")
    assert b"Subject: message 2" in lines
    with pytest.raises(poplib.error_proto, match="expunged"):
        c.retr(n)  # never read: gone
    with pytest.raises(poplib.error_proto, match="expunged"):
        c.top(n, 0)
    assert c.stat() == stat and c.uidl()[1] == uidl and c.list()[1] == lst  # the snapshot
    assert c.retr(4)[0].startswith(b"+OK")
    c.retr(3)  # read ahead too: sent, retrieved, left undeleted (\Seen on a gone UID at QUIT)
    for k in (1, 2, n):
        assert c.dele(k).startswith(b"+OK")
    assert c.quit().startswith(b"+OK")  # UPDATE: expunging an expunged UID is a no-op
    c2 = client()
    login(c2, account)
    assert c2.stat()[0] == n - 4  # 1 deleted here; 2, 3 and n expunged over IMAP
    c2.quit()
