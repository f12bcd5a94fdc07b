"""DMARC (RFC 7489) and ARC (RFC 8617) on port 25, against real DNS (dnsmasq on loopback):
p=reject → 550 5.7.1 at end of DATA with nothing stored; p=quarantine → the \\Junk mailbox (read
over IMAP); pct, sp=, broken and huge records, a forwarding hop that breaks SPF but keeps DKIM, a
list-like hop that breaks DKIM and ARC-seals (trusted and untrusted sealer), DNS that never
answers. Messages are DKIM-signed and ARC-sealed with dkimpy, keys published in dnsmasq."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import time
from collections.abc import Iterator
from typing import Any

import dkim as dkimpy
import pytest

from mailhouse.mailauth import dkim, dkimkeys
from mailhouse.message.headers import split_header_block
from tests.helpers import RawSMTP, mailbox
from tests.mailhouse_proc import PASSWORD
from tests.smtpclient.fake_server import FakeSMTP
from tests.smtpserver.test_dns_budget import BlackHole

BANK = dkimkeys.generate("bank.test", "sel")  # p=reject
LISTS = dkimkeys.generate("lists.test", "arc")  # a trusted mailing list (ARC sealer)
ROGUE = dkimkeys.generate("rogue.test", "arc")  # an ARC sealer nobody trusts
# a TXT answer of ~36 KB (over TCP): 40 records of 900 octets (near dnsmasq's line limit), one of
# them a DMARC record with a long unknown tag (RFC 7489 §6.3: ignored)
HUGE = ["v=DMARC1; p=none; x=" + "z" * 880, *(f"filler {i} " + "y" * 890 for i in range(40))]

RECORDS: dict[str, list[str]] = {
    "bank.test": ["v=spf1 ip4:192.0.2.10 -all"],  # the client (127.0.0.1) is never the bank
    "_dmarc.bank.test": ["v=DMARC1; p=reject; rua=mailto:dmarc@bank.test"],
    "shop.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.shop.test": ["v=DMARC1; p=quarantine"],
    "rare.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.rare.test": ["v=DMARC1; p=quarantine; pct=0"],
    "news.corp.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.corp.test": ["v=DMARC1; p=reject; sp=none"],
    "broken.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.broken.test": ["v=DMARC1; p=bounce-everything"],
    "huge.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.huge.test": HUGE,
    "lists.test": ["v=spf1 ip4:127.0.0.1 -all"],
    "rogue.test": ["v=spf1 ip4:127.0.0.1 -all"],
    "partner.test": ["v=spf1 ip4:192.0.2.10 -all"],
    "_dmarc.partner.test": ["v=DMARC1; p=reject"],
}
for _keys, _dom in ((BANK, "bank.test"), (LISTS, "lists.test"), (ROGUE, "rogue.test")):
    for _k in _keys:
        RECORDS[f"{_k.selector}._domainkey.{_dom}"] = [_k.public_record]


@pytest.fixture(scope="module")
def sink() -> Iterator[FakeSMTP]:
    """The outside server an alias forwards to (remote.test)."""
    s = FakeSMTP().start_thread()
    yield s
    s.stop_thread()


@pytest.fixture(scope="module")
def mh(tmp_path_factory: pytest.TempPathFactory, dns_server_factory: Any, sink: FakeSMTP) -> Iterator[Any]:
    from tests.mailhouse_proc import MailhouseProcess

    dns = dns_server_factory(txt=RECORDS)
    extra = (
        f'[dns]\nnameservers = ["{dns.nameserver}"]\n'
        f'[routes]\n"remote.test" = {{ host = "127.0.0.1", port = {sink.port}, tls = "none" }}\n'
        '[dmarc]\ntrusted_arc_sealers = ["lists.test"]\nallow = ["partner.test"]\n'
        # DMARC alone decides here: spam scoring (tests/spam) would junk these SPF-failing test messages
        "[spam]\nenabled = false\n"
    )
    proc = MailhouseProcess(tmp_path_factory.mktemp("mh-dmarc"), extra=extra, verify_inbound=True)
    proc.add_domain("example.org")
    proc.add_user("alice@example.org")
    proc.add_user("bob@example.org")
    proc.admin(lambda a: a.add_alias("fwd@example.org", "friend@remote.test"))
    proc.start()
    yield proc
    proc.stop()


def _msg(frm: str, subject: str, body: str = "hello\r\n") -> bytes:
    return (
        f"From: {frm}\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@x>\r\n\r\n{body}"
    ).encode()


def _send(mh: Any, mail_from: str, msg: bytes, rcpts: tuple[str, ...] = ("alice@example.org",)) -> None:
    with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
        c.sendmail(mail_from, list(rcpts), msg)


def _find(mh: Any, subject: str, folder: str = "INBOX", user: str = "alice@example.org") -> bytes | None:
    for m in mailbox(mh, user, folder):
        if f"Subject: {subject}\r\n".encode() in m:
            return m
    return None


def _imap(mh: Any) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the instance's self-signed pair
    return imaplib.IMAP4_SSL(*mh.addr("imaps"), ssl_context=ctx, timeout=30)


def _imap_junk(mh: Any, subject: str) -> tuple[bytes, bytes]:
    """(the LIST line of the \\Junk mailbox, the message found there with SEARCH) over IMAP."""
    with _imap(mh) as c:
        c.login("alice@example.org", PASSWORD)
        typ, lines = c.list()
        junk = [ln for ln in lines if isinstance(ln, bytes) and b"\\Junk" in ln]
        assert typ == "OK" and len(junk) == 1, lines
        name = junk[0].rsplit(b" ", 1)[1].strip(b'"').decode()
        c.select(name, readonly=True)
        typ, found = c.search(None, "SUBJECT", f'"{subject}"')
        nums = found[0].split()
        assert typ == "OK" and len(nums) == 1, found
        typ, data = c.fetch(nums[0], "(BODY.PEEK[])")
        item = data[0]
        assert isinstance(item, tuple)
        return junk[0], item[1]


def test_reject_is_550_before_any_250_and_nothing_is_stored(mh: Any) -> None:
    msg = _msg("Bank <alerts@bank.test>", "forged bank")
    with pytest.raises(smtplib.SMTPDataError) as e:
        _send(mh, "alerts@bank.test", msg, ("alice@example.org", "bob@example.org"))
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1"), e.value
    # the whole message is refused: no recipient got it, in any folder
    for user in ("alice@example.org", "bob@example.org"):
        for folder in ("INBOX", "Junk"):
            assert _find(mh, "forged bank", folder, user) is None


def test_reject_at_the_end_of_bdat_too(mh: Any) -> None:
    """RFC 3030: with CHUNKING the refusal is the reply to BDAT ... LAST, and nothing is stored."""
    msg = _msg("alerts@bank.test", "forged by bdat")
    c = RawSMTP(mh.addr("smtp"), timeout=30)
    try:
        assert c.reply().startswith(b"220")
        assert b"CHUNKING" in c.cmd(b"EHLO client.test")
        assert c.cmd(b"MAIL FROM:<alerts@bank.test>").startswith(b"250")
        assert c.cmd(b"RCPT TO:<alice@example.org>").startswith(b"250")
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        assert c.reply().startswith(b"550 5.7.1")
    finally:
        c.close()
    assert _find(mh, "forged by bdat") is None and _find(mh, "forged by bdat", "Junk") is None


def test_quarantine_files_into_junk(mh: Any) -> None:
    _send(mh, "offers@shop.test", _msg("offers@shop.test", "quarantined offer"))
    listed, got = _imap_junk(mh, "quarantined offer")
    assert b"dmarc=fail (p=quarantine dis=quarantine) header.from=shop.test" in got
    assert _find(mh, "quarantined offer") is None  # not in INBOX


def test_quarantine_recreates_a_deleted_junk_mailbox(mh: Any) -> None:
    with _imap(mh) as c:
        c.login("bob@example.org", PASSWORD)
        assert c.delete("Junk")[0] == "OK"
    _send(mh, "offers@shop.test", _msg("offers@shop.test", "junk again"), ("bob@example.org",))
    with _imap(mh) as c:
        c.login("bob@example.org", PASSWORD)
        typ, lines = c.list()
        assert any(isinstance(ln, bytes) and b"\\Junk" in ln and b"Junk" in ln for ln in lines), lines
    assert _find(mh, "junk again", "Junk", "bob@example.org") is not None


def test_pct_zero_is_not_enforced(mh: Any) -> None:
    _send(mh, "news@rare.test", _msg("news@rare.test", "sampled out"))
    got = _find(mh, "sampled out")
    assert got is not None and b"dmarc=fail (p=quarantine dis=none) header.from=rare.test" in got


def test_subdomain_gets_sp(mh: Any) -> None:
    # _dmarc.news.corp.test does not exist: the organisational record's sp=none applies
    _send(mh, "a@news.corp.test", _msg("a@news.corp.test", "subdomain sp"))
    got = _find(mh, "subdomain sp")
    assert got is not None and b"dmarc=fail (p=none dis=none) header.from=news.corp.test" in got


@pytest.mark.parametrize(
    ("domain", "expect"),
    [
        ("broken.test", b"dmarc=permerror header.from=broken.test"),
        ("huge.test", b"dmarc=fail (p=none dis=none) header.from=huge.test"),
    ],
)
def test_broken_and_huge_records_are_not_enforced(mh: Any, domain: str, expect: bytes) -> None:
    _send(mh, f"x@{domain}", _msg(f"x@{domain}", f"record {domain}"))
    got = _find(mh, f"record {domain}")
    assert got is not None and expect in got, got


def test_allowed_sender_domain_is_not_enforced(mh: Any) -> None:
    _send(mh, "x@partner.test", _msg("x@partner.test", "partner"))
    got = _find(mh, "partner")
    assert got is not None and b"dmarc=fail (p=reject dis=none) header.from=partner.test" in got


def test_forwarding_breaks_spf_but_dkim_keeps_dmarc_pass(mh: Any) -> None:
    signed = dkim.sign(_msg("alerts@bank.test", "forwarded statement"), "bank.test", BANK)
    # a forwarder re-sends it from its own address (SPF now fails for bank.test's alignment)
    _send(mh, "alerts@bank.test", signed)
    got = _find(mh, "forwarded statement")
    assert got is not None
    assert b"spf=fail smtp.mailfrom=bank.test" in got
    assert b"dkim=pass header.d=bank.test" in got
    assert b"dmarc=pass (p=reject dis=none) header.from=bank.test" in got


def _list_hop(sealer: str, keys: list[Any], subject: str) -> bytes:
    """The bank's signed message after a mailing list: subject tagged, footer added (DKIM broken),
    then ARC-sealed by the list, whose own Authentication-Results said the original passed."""
    original = dkim.sign(_msg("alerts@bank.test", subject), "bank.test", BANK)
    head, body = original.split(b"\r\n\r\n", 1)
    head = head.replace(f"Subject: {subject}".encode(), f"Subject: [list] {subject}".encode())
    ar = (
        f"Authentication-Results: {sealer}; dkim=pass header.d=bank.test header.s=selr;"
        " spf=fail smtp.mailfrom=bank.test; dmarc=pass header.from=bank.test; arc=none\r\n"
    ).encode()
    modified = ar + head + b"\r\n\r\n" + body + b"-- \r\nlist footer\r\n"
    rsa = next(k for k in keys if k.algorithm == "rsa-sha256")
    arc_set = dkimpy.arc_sign(
        modified, rsa.selector.encode(), sealer.encode(), rsa.private_key, sealer.encode(), linesep=b"\r\n"
    )
    assert arc_set, "dkimpy produced no ARC set"
    return b"".join(arc_set) + modified


def test_trusted_arc_sealer_rescues_a_list_hop(mh: Any) -> None:
    _send(mh, "bounces@lists.test", _list_hop("lists.test", LISTS, "list trusted"))
    got = _find(mh, "[list] list trusted")
    assert got is not None
    assert b"dkim=fail header.d=bank.test" in got
    assert b"arc=pass (as.d=lists.test)" in got
    assert b"dmarc=fail (p=reject dis=none arc-override=lists.test) header.from=bank.test" in got


def test_untrusted_arc_sealer_does_not(mh: Any) -> None:
    with pytest.raises(smtplib.SMTPDataError) as e:
        _send(mh, "bounces@rogue.test", _list_hop("rogue.test", ROGUE, "list rogue"))
    assert e.value.smtp_code == 550
    assert _find(mh, "[list] list rogue") is None


def test_dns_that_never_answers_is_temperror_and_accepted(mailhouse_factory: Any) -> None:
    hole = BlackHole()
    try:
        mh = mailhouse_factory(
            verify_inbound=True,
            extra=f'[dns]\nnameservers = ["127.0.0.1:{hole.port}"]\n[mailauth]\ndns_budget = 1.5\n',
        )
        mh.add_domain("example.org")
        mh.add_user("alice@example.org")
        mh.start()
        t0 = time.monotonic()
        _send(mh, "alerts@bank.test", _msg("alerts@bank.test", "dns down"))
        took = time.monotonic() - t0
        got = _find(mh, "dns down")
        assert got is not None and b"dmarc=temperror header.from=bank.test" in got, got
        assert took < 1.5 + 4.0, took  # the budget, not a resolver timeout per look-up
    finally:
        hole.close()


def test_alias_forwarding_outside_is_arc_sealed(mh: Any, sink: FakeSMTP, dns_server_factory: Any) -> None:
    """fwd@example.org → friend@remote.test: the forwarded copy carries an ARC set of example.org
    (RFC 8617 §5.1) whose AAR holds our results, and the chain validates (dkimpy, keys in DNS)."""
    signed = dkim.sign(_msg("alerts@bank.test", "to be forwarded"), "bank.test", BANK)
    _send(mh, "alerts@bank.test", signed, ("fwd@example.org",))
    end = time.monotonic() + 30
    while not any(b"to be forwarded" in t.data for t in sink.transactions) and time.monotonic() < end:
        time.sleep(0.1)
    tx = next(t for t in sink.transactions if b"to be forwarded" in t.data)
    data = tx.data.removesuffix(b".\r\n").replace(b"\r\n..", b"\r\n.")
    fields = dict((n.lower(), v) for n, v in split_header_block(data)[0] if n.lower().startswith(b"arc-"))
    assert fields[b"arc-seal"].startswith(b" i=1; cv=none; a=rsa-sha256; d=example.org;"), fields
    aar = fields[b"arc-authentication-results"]
    assert aar.startswith(b" i=1; mail.example.org;") and b"dmarc=pass" in aar, aar  # our results
    keys = mh.admin(lambda a: a.store.get_dkim_keys("example.org"))
    dns = dns_server_factory(
        txt={
            **{f"{k.selector}._domainkey.example.org": [k.public_record] for k in keys},
            **{n: v for n, v in RECORDS.items() if "_domainkey" in n},
        }
    )
    cv, results, why = dkimpy.arc_verify(
        data, dnsfunc=dkim.txt_lookup(dkim.make_resolver([("127.0.0.1", dns.port)]))
    )
    assert cv == dkimpy.CV_Pass, (why, results)
    assert results[0]["as-domain"] == b"example.org"
