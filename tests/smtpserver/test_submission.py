"""Submission (RFC 6409) on 587 with STARTTLS (RFC 3207) and on 465 with implicit TLS (RFC 8314),
against a real `mailhouse serve`: AUTH rules, sender ownership, limits, and the MSA's repairs
(Message-ID, Date, Bcc removal) and DKIM signatures seen in the recipient's mailbox.
"""

from __future__ import annotations

import asyncio
import base64
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable

import pytest

from mailhouse.mailauth import dkim
from mailhouse.message.headers import get_header, get_headers, split_header_block
from mailhouse.store import open_store
from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.dns import DNSServer


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's certificate is self-signed
    return ctx


def submission(mh: MailhouseProcess, user: str | None = "alice@example.org") -> smtplib.SMTP:
    c = smtplib.SMTP(*mh.addr("submission"), timeout=30)
    c.ehlo("client.test")
    c.starttls(context=tls_context())
    c.ehlo("client.test")
    if user:
        c.login(user, PASSWORD)
    return c


async def _inbox(mh: MailhouseProcess, address: str) -> list[bytes]:
    store = open_store(f"sqlite:///{mh.data_dir}/mailhouse.db", mh.data_dir)
    await store.open()
    try:
        acc = await store.get_account(address)
        assert acc is not None
        mb = await store.get_mailbox(acc.id, "INBOX")
        if mb is None:
            return []
        return [await store.blobs.get(m.blob_key) for m in await store.list_messages(mb.id)]
    finally:
        await store.close()


def inbox(mh: MailhouseProcess, address: str) -> list[bytes]:
    return asyncio.run(_inbox(mh, address))


class Raw:
    """A raw line client (TLS optional) to see exact replies."""

    def __init__(self, addr: tuple[str, int], *, implicit_tls: bool = False) -> None:
        sock = socket.create_connection(addr, timeout=20)
        self.sock: socket.socket = tls_context().wrap_socket(sock) if implicit_tls else sock
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> bytes:
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; buffer={self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\n".join(lines)

    def cmd(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        assert self.cmd(b"STARTTLS").startswith(b"220")
        self.sock = tls_context().wrap_socket(self.sock)

    def close(self) -> None:
        self.sock.close()


def plain(user: str, password: str = PASSWORD) -> bytes:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


# ---------------------------------------------------------------------------------- AUTH rules


def test_auth_before_starttls_is_530(mailhouse: MailhouseProcess) -> None:
    s = Raw(mailhouse.addr("submission"))
    ehlo = s.cmd(b"EHLO client.test")
    assert b"STARTTLS" in ehlo and b"AUTH" not in ehlo  # RFC 4954 §4: no AUTH in the clear
    assert (
        s.cmd(b"AUTH PLAIN " + plain("alice@example.org")) == b"530 5.7.0 Must issue a STARTTLS command first"
    )
    s.close()


def test_auth_after_starttls_works(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse, None) as c:
        assert c.has_extn("auth")
        code, text = c.login("alice@example.org", PASSWORD)
        assert code == 235, text


def test_auth_login_mechanism(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse, None) as c:
        c.user, c.password = "alice@example.org", PASSWORD
        code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235


def test_implicit_tls_on_465(mailhouse: MailhouseProcess) -> None:
    with smtplib.SMTP_SSL(*mailhouse.addr("submissions"), context=tls_context(), timeout=30) as c:
        c.ehlo("client.test")
        assert c.has_extn("auth") and not c.has_extn("starttls")
        c.login("alice@example.org", PASSWORD)
        assert (
            c.sendmail(
                "alice@example.org",
                ["bob@example.org"],
                b"From: alice@example.org\r\nSubject: 465\r\n\r\nhi\r\n",
            )
            == {}
        )
    assert len(inbox(mailhouse, "bob@example.org")) == 1


def test_bad_base64_in_auth_is_501(mailhouse: MailhouseProcess) -> None:
    s = Raw(mailhouse.addr("submissions"), implicit_tls=True)
    s.cmd(b"EHLO client.test")
    assert s.cmd(b"AUTH PLAIN !!!not-base64!!!").startswith(b"501 ")
    # and as a continuation line
    assert s.cmd(b"AUTH LOGIN").startswith(b"334 ")
    assert s.cmd(b"%%%").startswith(b"501 ")
    assert s.cmd(b"AUTH PLAIN " + plain("alice@example.org")).startswith(b"235 ")  # the session goes on
    s.close()


def test_wrong_password_throttled(mailhouse: MailhouseProcess) -> None:
    timings = []
    for _ in range(2):
        s = Raw(mailhouse.addr("submissions"), implicit_tls=True)  # a new connection: the delay is per IP
        s.cmd(b"EHLO client.test")
        t0 = time.monotonic()
        r = s.cmd(b"AUTH PLAIN " + plain("alice@example.org", "wrong-password"))
        timings.append(time.monotonic() - t0)
        assert r.startswith(b"535 5.7.8"), r
        s.close()
    # a lower bound only (load slows every answer, never speeds one up): 0.5 s after one failure
    assert timings[1] >= 0.45, timings


# ------------------------------------------------------------------------ envelope and relaying


def test_nothing_relayed_without_auth(mailhouse: MailhouseProcess) -> None:
    s = Raw(mailhouse.addr("submission"))
    s.cmd(b"EHLO client.test")
    assert s.cmd(b"MAIL FROM:<alice@example.org>") == b"530 5.7.0 Authentication required"
    s.starttls()
    s.cmd(b"EHLO client.test")
    assert s.cmd(b"MAIL FROM:<alice@example.org>") == b"530 5.7.0 Authentication required"
    assert s.cmd(b"RCPT TO:<someone@remote.test>").startswith(b"503")  # no transaction
    s.close()
    assert inbox(mailhouse, "alice@example.org") == []


def test_mail_from_of_another_user_is_553(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse) as c:
        code, text = c.mail("bob@example.org")
        assert (code, text[:5]) == (553, b"5.7.1"), text


def test_mail_from_owned_alias_is_allowed(mailhouse: MailhouseProcess) -> None:
    mailhouse.cli("alias", "add", "sales@example.org", "alice@example.org")
    with submission(mailhouse) as c:
        code, text = c.mail("sales@example.org")
        assert code == 250, text
        assert c.rcpt("bob@example.org")[0] == 250
        code, text = c.data(b"From: Sales <sales@example.org>\r\nSubject: from the alias\r\n\r\nhi\r\n")
        assert code == 250, text


@pytest.fixture
def limited(mailhouse_factory: Callable[..., MailhouseProcess]) -> MailhouseProcess:
    mh = mailhouse_factory(extra="[limits]\nmax_recipients = 3\n")
    mh.add_domain("example.org")
    for user in ("alice", "bob", "carol", "dave"):
        mh.add_user(f"{user}@example.org")
    return mh.start()


def test_recipients_beyond_limit_452(limited: MailhouseProcess) -> None:
    with submission(limited) as c:
        c.mail("alice@example.org")
        for rcpt in ("bob@example.org", "carol@example.org", "dave@example.org"):
            assert c.rcpt(rcpt)[0] == 250
        code, text = c.rcpt("alice@example.org")
        assert (code, text[:5]) == (452, b"4.5.3"), text  # RFC 5321 §4.5.3.1.10
        code, text = c.data(b"From: alice@example.org\r\nSubject: three\r\n\r\nhi\r\n")
        assert code == 250, text  # the accepted three still get it
    assert inbox(limited, "alice@example.org") == []
    assert len(inbox(limited, "dave@example.org")) == 1


def test_recipient_limit_counts_rcpt_commands_not_accounts(limited: MailhouseProcess) -> None:
    with submission(limited) as c:
        c.mail("alice@example.org")
        for rcpt in ("bob@example.org", "bob+a@example.org", "bob+b@example.org"):
            assert c.rcpt(rcpt)[0] == 250
        code, text = c.rcpt("bob+c@example.org")
        assert (code, text[:5]) == (452, b"4.5.3"), text


@pytest.mark.parametrize(
    "command",
    [
        b"MAIL FROM:<alice@@example.org>",
        b"MAIL FROM:<alice example.org>",
        b"RCPT TO:<bob@exa mple.org>",
        b"RCPT TO:<@example.org>",
        b"RCPT TO:<bob@example..org>",
    ],
)
def test_malformed_addresses_501(mailhouse: MailhouseProcess, command: bytes) -> None:
    s = Raw(mailhouse.addr("submissions"), implicit_tls=True)
    s.cmd(b"EHLO client.test")
    assert s.cmd(b"AUTH PLAIN " + plain("alice@example.org")).startswith(b"235")
    if command.startswith(b"RCPT"):
        assert s.cmd(b"MAIL FROM:<alice@example.org>").startswith(b"250")
    r = s.cmd(command)
    # RFC 3463: X.1.3 bad destination mailbox address syntax, X.1.7 bad sender's
    assert r.startswith(b"501 5.1.3" if command.startswith(b"RCPT") else b"501 5.1.7"), r
    s.close()


# ---------------------------------------------------------------- the MSA's checks and repairs


@pytest.fixture
def dns_for(dns_server_factory: Callable[..., DNSServer]) -> Callable[[MailhouseProcess, str], DNSServer]:
    """A dnsmasq serving the DKIM TXT records `mailhouse dns DOMAIN` prints."""

    def make(mh: MailhouseProcess, domain: str) -> DNSServer:
        txt: dict[str, list[str]] = {}
        for line in mh.cli("dns", domain).stdout.splitlines():
            m = re.match(r"(\S+\._domainkey\.\S+)\. \d+ IN TXT (.*)$", line)
            if m:
                txt[m.group(1)] = ["".join(re.findall(r'"([^"]*)"', m.group(2)))]
        assert len(txt) == 2, txt  # rsa and ed25519
        return dns_server_factory(txt=txt)

    return make


def test_local_recipient_gets_repaired_signed_message(
    mailhouse: MailhouseProcess, dns_for: Callable[[MailhouseProcess, str], DNSServer]
) -> None:
    body = (
        b"From: Alice <alice@example.org>\r\n"
        b"To: Bob <bob@example.org>\r\n"
        b"Bcc: hidden@remote.test\r\n"
        b"Subject: submitted\r\n"
        b"\r\n"
        b"Hello Bob.\r\n"
    )
    with submission(mailhouse) as c:
        assert c.sendmail("alice@example.org", ["bob@example.org"], body) == {}
    (msg,) = inbox(mailhouse, "bob@example.org")
    assert get_header(msg, "Bcc") is None and b"hidden@remote.test" not in msg  # RFC 5322 §3.6.3
    mid = get_header(msg, "Message-ID")
    assert mid is not None and re.fullmatch(rb"<[^@<>\s]+@mail\.example\.org>", mid), mid  # RFC 6409 §8.3
    assert get_header(msg, "Date") is not None  # RFC 6409 §8.2
    names = [n.lower() for n, _ in split_header_block(msg)[0]]
    assert names[:4] == [b"return-path", b"dkim-signature", b"dkim-signature", b"received"], names
    sigs = get_headers(msg, "DKIM-Signature")
    assert {re.search(rb"a=([\w-]+)", s).group(1) for s in sigs} == {b"rsa-sha256", b"ed25519-sha256"}  # type: ignore[union-attr]
    dns = dns_for(mailhouse, "example.org")
    assert dns.port is not None
    results = dkim.verify(msg, [(dns.host, dns.port)])
    assert sorted((r.algorithm, r.result, r.domain) for r in results) == [
        ("ed25519-sha256", "pass", "example.org"),
        ("rsa-sha256", "pass", "example.org"),
    ], results


def test_header_from_of_another_user_is_553(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse) as c:
        c.mail("alice@example.org")
        c.rcpt("bob@example.org")
        code, text = c.data(b"From: bob@example.org\r\nSubject: spoof\r\n\r\nhi\r\n")
        assert (code, text[:5]) == (553, b"5.7.1"), text  # RFC 6409 §6.1
    assert inbox(mailhouse, "bob@example.org") == []


def test_message_without_from_is_refused(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse) as c:
        c.mail("alice@example.org")
        c.rcpt("bob@example.org")
        code, text = c.data(b"Subject: no from\r\n\r\nhi\r\n")
        assert (code, text[:5]) == (554, b"5.6.0"), text
        assert b"From" in text
    assert inbox(mailhouse, "bob@example.org") == []


def test_broken_header_line_is_refused(mailhouse: MailhouseProcess) -> None:
    with submission(mailhouse) as c:
        c.mail("alice@example.org")
        c.rcpt("bob@example.org")
        code, text = c.data(b"From: alice@example.org\r\nthis is not a header\r\nSubject: x\r\n\r\nhi\r\n")
        assert (code, text[:5]) == (554, b"5.6.0"), text
        assert b"line" in text
    assert inbox(mailhouse, "bob@example.org") == []
