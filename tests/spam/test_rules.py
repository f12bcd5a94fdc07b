"""The rules that need no DNS: authentication results, header anomalies, content (issue 14 §3).
Each rule has a message that makes it fire and one that does not."""

from __future__ import annotations

import base64

import pytest

from mailhouse.spam.authrules import AuthResultsRule
from mailhouse.spam.content import ContentRules
from mailhouse.spam.headerrules import HeaderAnomalies
from mailhouse.spam.scan import GTUBE
from tests.spam.helpers import GOOD_HEAD, HOST, ctx, names, run

PLAIN = GOOD_HEAD + b"\r\nHello Bob, see you tomorrow.\r\n"


# -- authentication results (our Authentication-Results only) --------------------------------------


def _ar(sid: str, body: str) -> bytes:
    return f"Authentication-Results: {sid};\r\n\t{body}\r\n".encode()


@pytest.mark.parametrize(
    ("results", "fired"),
    [
        ("spf=fail smtp.mailfrom=sender.test", "SPF_FAIL"),
        ("spf=softfail smtp.mailfrom=sender.test", "SPF_SOFTFAIL"),
        ("dkim=fail header.d=sender.test header.s=s1 header.a=rsa-sha256", "DKIM_FAIL"),
        ("dmarc=fail (p=reject) header.from=sender.test", "DMARC_FAIL"),
        ("arc=fail (chain broken)", "ARC_FAIL"),
    ],
)
def test_auth_failures_fire(results: str, fired: str) -> None:
    hits = run(AuthResultsRule(), ctx(_ar(HOST, results) + PLAIN))
    assert fired in names(hits)
    hit = next(h for h in hits if h.name == fired)
    assert hit.score > 0 and hit.reason


def test_auth_passes_do_not_fire_failures() -> None:
    ar = _ar(HOST, "spf=pass smtp.mailfrom=sender.test;\r\n\tdkim=pass header.d=sender.test header.s=s1")
    hits = run(AuthResultsRule(), ctx(ar + PLAIN))
    assert names(hits) == {"SPF_PASS", "DKIM_VALID"}
    assert all(h.score < 0 for h in hits)


def test_auth_results_of_another_authserv_id_are_ignored() -> None:
    """Only our own field counts (RFC 8601 §5): a sender cannot claim failures or passes elsewhere."""
    forged = _ar("mx.elsewhere.test", "spf=pass smtp.mailfrom=sender.test;\r\n\tdmarc=pass header.from=x")
    assert run(AuthResultsRule(), ctx(forged + PLAIN)) == []


# -- header anomalies ------------------------------------------------------------------------------


def test_a_proper_header_section_fires_nothing() -> None:
    assert run(HeaderAnomalies(), ctx(PLAIN)) == []


@pytest.mark.parametrize(
    ("head", "fired"),
    [
        (GOOD_HEAD.replace(b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n", b""), "MISSING_DATE"),
        (GOOD_HEAD.replace(b"07 Dec 2026", b"07 Dec 2029"), "DATE_IN_FUTURE"),
        (GOOD_HEAD.replace(b"Message-ID: <abc.123@sender.test>\r\n", b""), "MISSING_MID"),
        (GOOD_HEAD.replace(b"<abc.123@sender.test>", b"abc123"), "INVALID_MSGID"),
        (GOOD_HEAD + b"Reply-To: <collect@elsewhere.test>\r\n", "FROM_REPLYTO_DIFFER"),
        (GOOD_HEAD.replace(b"To: bob@example.org", b"To: undisclosed-recipients:;"), "UNDISC_RECIPS"),
        (GOOD_HEAD.replace(b"From: Ann <ann@sender.test>\r\n", b""), "MISSING_FROM"),
    ],
)
def test_header_anomalies_fire(head: bytes, fired: str) -> None:
    hits = run(HeaderAnomalies(), ctx(head + b"\r\nbody\r\n"))
    assert names(hits) == {fired}


def test_reply_to_in_a_subdomain_of_from_is_no_mismatch() -> None:
    head = GOOD_HEAD + b"Reply-To: <help@support.sender.test>\r\n"
    assert run(HeaderAnomalies(), ctx(head + b"\r\nbody\r\n")) == []


# -- content ---------------------------------------------------------------------------------------


def _mime(*parts: bytes) -> bytes:
    out = GOOD_HEAD + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    for p in parts:
        out += b"--b1\r\n" + p + b"\r\n"
    return out + b"--b1--\r\n"


TEXT_PART = b"Content-Type: text/plain\r\n\r\nsee the attachment\r\n"


def _attachment(filename: str) -> bytes:
    name = filename.encode("utf-8")
    return (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''"
        + b"".join(b"%%%02X" % c for c in name)
        + b"\r\n\r\n"
        + base64.b64encode(b"MZ\x90\x00")
        + b"\r\n"
    )


def test_plain_message_fires_no_content_rule() -> None:
    assert run(ContentRules(), ctx(PLAIN)) == []


def test_gtube_is_certain_spam() -> None:
    (hit,) = run(ContentRules(), ctx(GOOD_HEAD + b"\r\n" + GTUBE + b"\r\n"))
    assert (hit.name, hit.score) == ("GTUBE", 1000.0)


def test_gtube_inside_base64_is_found() -> None:
    part = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(GTUBE)
    assert "GTUBE" in names(run(ContentRules(), ctx(_mime(part))))


def test_html_only_fires_and_alternative_does_not() -> None:
    html_only = GOOD_HEAD + b"Content-Type: text/html\r\n\r\n<p>Hello</p>\r\n"
    assert names(run(ContentRules(), ctx(html_only))) == {"HTML_ONLY"}
    alt = _mime(TEXT_PART, b"Content-Type: text/html\r\n\r\n<p>Hello</p>\r\n")
    assert run(ContentRules(), ctx(alt)) == []


def test_link_text_showing_another_domain_fires() -> None:
    html = b'<a href="http://evil.example.net/login">https://www.mybank.test/login</a>'
    hits = run(ContentRules(), ctx(_mime(TEXT_PART, b"Content-Type: text/html\r\n\r\n" + html)))
    assert "LINK_TEXT_MISMATCH" in names(hits)
    assert "mybank.test" in next(h.reason for h in hits if h.name == "LINK_TEXT_MISMATCH")


def test_link_text_of_the_same_site_or_words_does_not_fire() -> None:
    html = (
        b'<a href="https://login.mybank.test/x">www.mybank.test</a> '
        b'<a href="https://elsewhere.test/">click here</a>'
    )
    assert run(ContentRules(), ctx(_mime(TEXT_PART, b"Content-Type: text/html\r\n\r\n" + html))) == []


@pytest.mark.parametrize(
    ("filename", "fired"),
    [
        ("invoice.exe", {"EXECUTABLE_ATTACHMENT"}),
        ("update.SCR", {"EXECUTABLE_ATTACHMENT"}),
        ("script.js", {"EXECUTABLE_ATTACHMENT"}),
        ("run.vbs", {"EXECUTABLE_ATTACHMENT"}),
        ("budget.xlsm", {"MACRO_ATTACHMENT"}),
        ("letter.docm", {"MACRO_ATTACHMENT"}),
        # U+202E RIGHT-TO-LEFT OVERRIDE: "invoice\u202etxt.exe" is displayed as "invoiceexe.txt"
        ("invoice\u202etxt.exe", {"BIDI_FILENAME", "EXECUTABLE_ATTACHMENT"}),
        ("report\u202excod.js", {"BIDI_FILENAME", "EXECUTABLE_ATTACHMENT"}),
    ],
)
def test_dangerous_attachments_fire(filename: str, fired: set[str]) -> None:
    assert names(run(ContentRules(), ctx(_mime(TEXT_PART, _attachment(filename))))) == fired


@pytest.mark.parametrize("filename", ["report.pdf", "photo.jpg", "letter.docx", "sheet.xlsx"])
def test_harmless_attachments_do_not_fire(filename: str) -> None:
    assert run(ContentRules(), ctx(_mime(TEXT_PART, _attachment(filename)))) == []


def test_url_shortener_fires_and_a_plain_link_does_not() -> None:
    short = GOOD_HEAD + b"\r\nlook: https://bit.ly/3xYz now\r\n"
    assert names(run(ContentRules(), ctx(short))) == {"URL_SHORTENER"}
    plain = GOOD_HEAD + b"\r\nlook: https://www.example.com/page now\r\n"
    assert run(ContentRules(), ctx(plain)) == []
