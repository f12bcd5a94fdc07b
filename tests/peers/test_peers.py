"""The peer servers work, proven with real clients (dnspython, smtplib, imaplib, poplib, asyncpg)."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import subprocess

import dns.resolver
import pytest

from .ports import free_port, port_is_open, wait_port
from .postfix import smtp_source

MULTIPART = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=zz\r\n"
    b"\r\n"
    b"--zz\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"hello\r\n"
    b"--zz\r\n"
    b"Content-Type: image/png\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"aGVsbG8=\r\n"
    b"--zz--\r\n"
)


# -- ports ---------------------------------------------------------------------------


def test_free_port_and_wait_port():
    import socket

    port = free_port("127.0.0.2")
    assert not port_is_open("127.0.0.2", port)
    with socket.socket() as s:
        s.bind(("127.0.0.2", port))
        s.listen()
        wait_port("127.0.0.2", port, timeout=2)
    with pytest.raises(TimeoutError):
        wait_port("127.0.0.2", port, timeout=0.2)
    with pytest.raises(ValueError):
        free_port("192.0.2.1")


# -- DNS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dns_server(dns_server_factory):
    return dns_server_factory(
        mx={"example.test": [(10, "mx1.example.test"), (20, "mx2.example.test")]},
        a={"mx1.example.test": "127.0.0.2", "mx2.example.test": ["127.0.0.3"]},
        aaaa={"mx1.example.test": "::1"},
        txt={
            "example.test": ["v=spf1 ip4:127.0.0.0/8 -all"],
            "sel._domainkey.example.test": "v=DKIM1; k=rsa; p=" + "A" * 400,
        },
        srv={"_submission._tcp.example.test": [(0, 1, 587, "mx1.example.test")]},
    )


def test_dns_answers(dns_server):
    host, port = dns_server.nameserver.split(":")
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [host]
    r.port = int(port)
    mx = sorted((rr.preference, rr.exchange.to_text()) for rr in r.resolve("example.test", "MX"))
    assert mx == [(10, "mx1.example.test."), (20, "mx2.example.test.")]
    assert [rr.address for rr in r.resolve("mx1.example.test", "A")] == ["127.0.0.2"]
    assert [rr.address for rr in r.resolve("mx1.example.test", "AAAA")] == ["::1"]
    spf = [b"".join(rr.strings) for rr in r.resolve("example.test", "TXT")]
    assert spf == [b"v=spf1 ip4:127.0.0.0/8 -all"]
    dkim = [rr.strings for rr in r.resolve("sel._domainkey.example.test", "TXT")]
    assert len(dkim) == 1 and len(dkim[0]) == 2  # > 255 octets: split into two strings
    assert b"".join(dkim[0]) == b"v=DKIM1; k=rsa; p=" + b"A" * 400
    srv = [
        (rr.priority, rr.weight, rr.port, rr.target.to_text())
        for rr in r.resolve("_submission._tcp.example.test", "SRV")
    ]
    assert srv == [(0, 1, 587, "mx1.example.test.")]
    with pytest.raises(dns.resolver.NoAnswer):
        r.resolve("mx2.example.test", "AAAA")


def test_dns_unknown_is_nxdomain_and_never_forwarded(dns_server):
    r = dns_server.resolver()
    for name in ("nothing.example.test", "www.example.com", "gmail.com"):
        with pytest.raises(dns.resolver.NXDOMAIN):
            r.resolve(name, "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("gmail.com", "MX")
    assert any("gmail.com" in q for q in dns_server.queries())
    assert dns_server.forwarded() == []
    assert "config gmail.com is NXDOMAIN" in dns_server.log(200)


def test_dns_update_keeps_port(dns_server_factory):
    srv = dns_server_factory(a={"a.test": "127.0.0.5"})
    port = srv.port
    assert [rr.address for rr in srv.resolver().resolve("a.test", "A")] == ["127.0.0.5"]
    srv.update(a={"a.test": "127.0.0.6"})
    assert srv.port == port
    assert [rr.address for rr in srv.resolver().resolve("a.test", "A")] == ["127.0.0.6"]
    srv.stop()
    assert srv.proc is None


# -- Postfix ---------------------------------------------------------------------------


def test_postfix_local_mailbox_delivery(postfix_factory):
    pf = postfix_factory(mode="local", domains=["example.test"], mailboxes=["bob@example.test"])
    with smtplib.SMTP(pf.host, pf.port, timeout=10) as s:
        code, caps = s.ehlo("client.test")
        assert code == 250 and b"SMTPUTF8" in caps
        assert s.sendmail("ann@example.org", ["bob@example.test"], b"Subject: one\r\n\r\nbody\r\n") == {}
        # Unknown mailbox in a hosted domain and relaying elsewhere are both refused.
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("ann@example.org", ["nobody@example.test"], b"Subject: x\r\n\r\nx\r\n")
    files = pf.wait_delivered(1, "bob@example.test")
    assert files[0].parent.name == "new"
    assert b"Subject: one" in files[0].read_bytes()
    pf.wait_queue_empty()
    assert "Mail queue is empty" in pf.queue()


def test_postfix_refuses_relay_outside_mynetworks(postfix_factory):
    pf = postfix_factory(mode="local", host="127.0.0.2", mynetworks="127.0.0.1/32")
    with smtplib.SMTP(pf.host, pf.port, timeout=10, source_address=("127.0.0.3", 0)) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            s.sendmail("ann@example.org", ["someone@elsewhere.test"], b"Subject: x\r\n\r\nx\r\n")
        assert exc.value.recipients["someone@elsewhere.test"][0] == 554
        assert s.sendmail("ann@example.org", ["any@example.test"], b"Subject: y\r\n\r\ny\r\n") == {}
    pf.wait_delivered(1, "any@example.test")


def test_postfix_relays_to_smtp_sink(postfix_factory, smtp_sink_factory, tmp_path):
    sink = smtp_sink_factory("127.0.0.3", dump_dir=tmp_path / "sink")
    pf = postfix_factory(mode="relay", host="127.0.0.2", relay_to=sink.address)
    with smtplib.SMTP(pf.host, pf.port, timeout=10) as s:
        s.sendmail("ann@example.test", ["carol@example.net"], b"Subject: relayed\r\n\r\nhi\r\n")
    msgs = sink.wait_messages(1)
    text = msgs[0].read_bytes()
    assert b"X-Rcpt-Args: <carol@example.net>" in text
    assert b"X-Client-Addr: 127.0.0.2" in text  # Postfix's client bound to its own address
    assert b"Subject: relayed" in text
    pf.wait_queue_empty()
    # smtp-source through Postfix to the sink: the benchmark reference path.
    elapsed = smtp_source(pf.host, pf.port, messages=20, sessions=4, size=1000, to="x@example.org")
    assert elapsed > 0
    pf.wait_queue_empty()
    assert len(sink.wait_messages(21)) == 21


def test_postfix_relay_domain_via_python_listener(postfix_factory):
    """Relay only a given domain, to a bare socket listener that speaks just enough SMTP."""
    import socket
    import threading

    received: list[bytes] = []
    lsock = socket.socket()
    lsock.bind(("127.0.0.4", 0))
    lsock.listen()
    port = lsock.getsockname()[1]

    def serve():
        conn, _ = lsock.accept()
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 tiny ESMTP\r\n")
            for line in f:
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    conn.sendall(b"250 tiny\r\n")
                elif cmd == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    body = b""
                    for dl in f:
                        if dl == b".\r\n":
                            break
                        body += dl
                    received.append(body)
                    conn.sendall(b"250 ok\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    pf = postfix_factory(
        mode="relay", relay_to=f"127.0.0.4:{port}", relay_domains=["example.net"], mynetworks=""
    )
    with smtplib.SMTP(pf.host, pf.port, timeout=10, source_address=("127.0.0.5", 0)) as s:
        s.sendmail("a@b.test", ["d@example.net"], b"Subject: to-listener\r\n\r\nx\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("a@b.test", ["d@other.test"], b"Subject: no\r\n\r\nx\r\n")
    t.join(20)
    lsock.close()
    assert received and b"Subject: to-listener" in received[0]


# -- Dovecot ---------------------------------------------------------------------------


def test_dovecot_imap_and_pop3(dovecot_factory):
    dv = dovecot_factory(users={"alice@example.test": "s3cret", "bob": "pw"})
    dv.add_message("alice@example.test", MULTIPART, flags=["\\Seen"])
    dv.add_message("alice@example.test", b"Subject: plain\r\n\r\nbody\r\n")
    dv.add_message("alice@example.test", b"Subject: sent\r\n\r\nbody\r\n", mailbox="Sent")

    imap = imaplib.IMAP4(dv.host, dv.imap_port)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@example.test", "wrong")
        assert imap.login("alice@example.test", "s3cret")[0] == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [b"2"]
        typ, data = imap.fetch("1", "(FLAGS BODYSTRUCTURE)")
        assert typ == "OK"
        resp = data[0]
        assert b"\\Seen" in resp
        assert b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 5 0' in resp
        assert b'("image" "png" NIL NIL NIL "base64" 8' in resp
        assert b'"mixed" ("boundary" "zz")' in resp
        assert imap.select("Sent")[1] == [b"1"]
    finally:
        imap.logout()

    pop = poplib.POP3(dv.host, dv.pop3_port, timeout=10)
    try:
        pop.user("alice@example.test")
        pop.pass_("s3cret")
        count, size = pop.stat()
        assert count == 2 and size > len(MULTIPART)
    finally:
        pop.quit()


def test_postfix_delivers_dovecot_reads(postfix_factory, dovecot_factory):
    """Postfix virtual delivery and Dovecot share one Maildir tree (same uid, same layout)."""
    pf = postfix_factory(mode="local", mailboxes=["alice@example.test"])
    dv = dovecot_factory(users={"alice@example.test": "pw"}, mail_dir=pf.mail_dir, pop3_port=0)
    with smtplib.SMTP(pf.host, pf.port, timeout=10) as s:
        s.sendmail("x@example.org", ["alice@example.test"], MULTIPART)
    pf.wait_delivered(1, "alice@example.test")
    imap = imaplib.IMAP4(dv.host, dv.imap_port)
    try:
        imap.login("alice@example.test", "pw")
        assert imap.select("INBOX", readonly=True)[1] == [b"1"]
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"Subject: parts" in data[0][1]
    finally:
        imap.logout()


# -- PostgreSQL ------------------------------------------------------------------------


def test_postgres_psql_select_1(postgres):
    assert postgres.psql("select 1").strip() == "1"


async def test_postgres_asyncpg(postgres, postgres_db):
    import asyncpg

    conn = await asyncpg.connect(postgres.url)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "mailhouse"
    finally:
        await conn.close()
    conn = await asyncpg.connect(postgres_db)
    try:
        await conn.execute("create table t (x int)")
        assert await conn.fetchval("select count(*) from t") == 0
    finally:
        await conn.close()


def test_stop_kills_processes(dns_server_factory):
    srv = dns_server_factory(a={"k.test": "127.0.0.9"})
    pid = srv.proc.pid
    srv.stop()
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_pebble_directory_and_stop(dns_server_factory):
    """pebble serves its ACME directory over TLS trusted by `ca_file`, hands out its CA, stops by PID."""
    import json
    import ssl
    import urllib.request

    from .pebble import Pebble

    dns = dns_server_factory()
    pebble = Pebble(http_port=free_port(), dnsserver=dns.nameserver).start()
    try:
        ctx = ssl.create_default_context(cafile=str(pebble.ca_file))
        with urllib.request.urlopen(pebble.directory, context=ctx, timeout=10) as r:
            directory = json.load(r)
        assert {"newAccount", "newNonce", "newOrder"} <= set(directory)  # RFC 8555 §7.1.1
        assert pebble.intermediate_pem().startswith("-----BEGIN CERTIFICATE-----")
        proc = pebble.proc
    finally:
        pebble.stop()
    assert proc is not None and proc.poll() is not None
    assert not port_is_open("127.0.0.1", pebble.port)
