"""NOTIFY and URLAUTH through a real socket (issue 13 §1).

* ``NOTIFY SET (MAILBOXES INBOX (MessageExpunge))`` is valid (RFC 5465 §5: the MessageNew /
  MessageExpunge pairing is for the selected mailbox; Dovecot accepts it) and reports an
  expunge in INBOX as STATUS.
* No NOTIFY / URLFETCH / GENURLAUTH / RESETKEY input drops the connection: every malformed
  command gets a tagged BAD or NO and the session goes on (a table, then hypothesis).
* ``GENURLAUTH "imap://user@host/INBOX/;uid=N;urlauth=user+user" INTERNAL`` without
  ``;UIDVALIDITY`` is valid (RFC 5092 §6, RFC 4467 §6); URLFETCH of such URLs with
  ``;section=``, ``;partial=``, ``(url BINARY)`` and ``(url BODYPARTSTRUCTURE)`` (RFC 5524)
  answers what the RFCs (and Dovecot's imaptest ``urlauth-binary`` script) say.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.imapserver.imap_wire import RawIMAP as PlainIMAP
from tests.imapserver.server_helpers import RawIMAP, raw_client, start_server, tagged
from tests.mailhouse_proc import MailhouseProcess

USERS = ("nu1", "nu2", "nu3")
HOST = "mail.example.org"  # MailhouseProcess's hostname: a URL of this server carries it
QP_BODY = b"caf=C3=A9 hello=3Dworld=\r\n!"
MESSAGE = (
    b"From: a@b.example\r\nTo: c@d.example\r\nSubject: urltest\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="xx"\r\n\r\npreamble\r\n--xx\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    + QP_BODY
    + b"\r\n--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQFBgc=\r\n--xx--\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("notifyurl"), users=USERS)
    try:
        yield mh
    finally:
        mh.stop()


def _append(c: RawIMAP, mailbox: str, msg: bytes) -> int:
    c.n += 1
    tag = b"R%d" % c.n
    c.send(tag + b" APPEND " + mailbox.encode() + b" {%d+}\r\n" % len(msg) + msg + b"\r\n")
    r = c.until_tagged(tag)
    m = re.search(rb"APPENDUID \d+ (\d+)", r[-1])
    assert m is not None, r
    return int(m.group(1))


def test_notify_message_expunge_alone(server: MailhouseProcess) -> None:
    n = raw_client(server, "nu1")
    other = raw_client(server, "nu1")
    try:
        r = n.cmd("NOTIFY SET (MAILBOXES INBOX (MessageExpunge))")
        assert tagged(r).startswith(b"OK"), r  # was BAD: "must be specified together"
        for ev in ("(MessageNew)", "(FlagChange)", "(MessageExpunge FlagChange)"):
            assert tagged(n.cmd(f"NOTIFY SET (PERSONAL {ev})")).startswith(b"OK"), ev
        assert tagged(n.cmd("NOTIFY SET (MAILBOXES INBOX (MessageExpunge))")).startswith(b"OK")
        uid = _append(other, "INBOX", b"Subject: x\r\n\r\nx\r\n")
        assert tagged(other.cmd("SELECT INBOX")).startswith(b"OK")
        assert tagged(other.cmd(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")).startswith(b"OK")
        assert tagged(other.cmd("EXPUNGE")).startswith(b"OK")
        # the expunge is reported (RFC 5465 §5.3: STATUS for a mailbox that is not selected);
        # the APPEND before it is not (MessageNew was not asked for)
        ln = n.line()
        assert ln.startswith(b"* STATUS INBOX (") and b"MESSAGES 0" in ln, ln
        # NOTIFY SET STATUS: FlagChange alone gets UIDVALIDITY and HIGHESTMODSEQ (imaptest "notify")
        r = n.cmd("NOTIFY SET STATUS (MAILBOXES INBOX (FlagChange))")
        assert tagged(r).startswith(b"OK") and re.match(rb"\* STATUS INBOX \(.*UIDVALIDITY \d+", r[0]), r
        assert re.search(rb"HIGHESTMODSEQ \d+\)$", r[0]), r
        r = n.cmd("NOTIFY SET STATUS (MAILBOXES INBOX (MessageExpunge))")
        assert tagged(r).startswith(b"OK") and re.match(rb"\* STATUS INBOX \(MESSAGES 0 ", r[0]), r
        # SELECTED keeps the pairing rule (RFC 5465 §5), as Dovecot does
        assert tagged(n.cmd("NOTIFY SET (SELECTED (MessageExpunge))")).startswith(b"BAD")
        assert tagged(n.cmd("NOOP")).startswith(b"OK")
    finally:
        n.close()
        other.close()


MALFORMED = [
    "NOTIFY",
    "NOTIFY ",
    "NOTIFY SET",
    "NOTIFY SET ",
    "NOTIFY SET (",
    "NOTIFY SET ((",
    "NOTIFY SET ()",
    "NOTIFY SET (MAILBOXES",
    "NOTIFY SET (MAILBOXES INBOX",
    "NOTIFY SET (MAILBOXES INBOX ()",
    "NOTIFY SET (MAILBOXES INBOX ())",  # RFC 5465 §8: an empty event list is BAD (as Dovecot)
    "NOTIFY SET (MAILBOXES INBOX (MessageNew (FLAGS)))",
    "NOTIFY SET (MAILBOXES () (MessageNew MessageExpunge))",
    'NOTIFY SET (MAILBOXES "a&b" (MessageExpunge))',
    "NOTIFY SET (SUBTREE (INBOX (MessageNew MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew (BODY[ MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew (BINARY[1]<0.-1>) MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge)) (SELECTED (MessageNew MessageExpunge))",
    "NOTIFY SET STATUS",
    "NOTIFY SET STATUS STATUS (PERSONAL (MailboxName))",
    "NOTIFY SET (INBOXES (Bogus))",
    "NOTIFY SET (PERSONAL (AnnotationChange))",
    "NOTIFY SET (PERSONAL (MailboxName)) extra",
    "NOTIFY NONE extra",
    "NOTIFY BOGUS",
    "URLFETCH",
    "URLFETCH ",
    "URLFETCH (",
    "URLFETCH ()",
    'URLFETCH ("imap://x/INBOX/;uid=1"',
    'URLFETCH ("imap://x/INBOX/;uid=1" BOGUS)',
    'URLFETCH ("imap://x/INBOX/;uid=1" BINARY BINARY BODY)',
    "URLFETCH imap://x/INBOX/;uid=1 (",
    'URLFETCH "imap://x@/INBOX/;uid=99999999999;urlauth=anonymous:internal:zz"',
    'URLFETCH "imap://a%ZZ@h/%FF%FE/;uid=1;urlauth=user+a%FF:internal:00"',
    'URLFETCH "/INBOX/;uid=1/;section=1.2.3.4.5.6.7.8.9.0.1.2.3.4.5.6.7.8.9;urlauth=anonymous:internal:00"',
    'URLFETCH "imap://h/INBOX/;uid=1/;partial=99999999999999999999.1;urlauth=anonymous:internal:00"',
    'URLFETCH "imap://h/INBOX/;uid=1;expire=notadate;urlauth=anonymous:internal:00"',
    "GENURLAUTH",
    'GENURLAUTH "imap://x/INBOX/;uid=1;urlauth=anonymous"',
    'GENURLAUTH "imap://x/INBOX/;uid=1;urlauth=anonymous" SHA1',
    'GENURLAUTH "imap://x/INBOX/;uid=1;urlauth=anonymous" INTERNAL extra(',
    'GENURLAUTH "" INTERNAL',
    'GENURLAUTH "imap://nu2%40example.org@h/%FF/;uid=1;urlauth=user+%FF" INTERNAL',
    "GENURLAUTH (a b) INTERNAL",
    "RESETKEY (",
    "RESETKEY INBOX (",
    "RESETKEY INBOX BOGUS",
    'RESETKEY "a&b"',
    "RESETKEY NoSuchBox INTERNAL",
]


def _alive(c: RawIMAP, cmd: str) -> None:
    r = c.cmd(cmd)
    status = tagged(r)
    assert status.startswith((b"OK", b"NO", b"BAD")), (cmd, r)
    assert not status.startswith(b"BYE"), (cmd, r)
    assert tagged(c.cmd("NOOP")).startswith(b"OK"), cmd


def test_malformed_notify_and_urlauth_never_drop_the_session(server: MailhouseProcess) -> None:
    c = raw_client(server, "nu2")
    try:
        for cmd in MALFORMED:
            _alive(c, cmd)
    finally:
        c.close()


_TOKENS = st.sampled_from(
    [
        "(",
        ")",
        " ",
        '"',
        "INBOX",
        "MAILBOXES",
        "SUBTREE",
        "SELECTED",
        "SELECTED-DELAYED",
        "PERSONAL",
        "INBOXES",
        "SUBSCRIBED",
        "STATUS",
        "SET",
        "NONE",
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "MailboxName",
        "BODY[",
        "]",
        "<0.5>",
        "UID",
        "INTERNAL",
        "BINARY",
        "BODYPARTSTRUCTURE",
        "imap://nu3%40example.org@mail.example.org/INBOX",
        "/;uid=1",
        ";uidvalidity=",
        "/;section=",
        "1.2",
        "/;partial=",
        "3.4",
        ";urlauth=",
        "user+nu3%40example.org",
        "anonymous",
        ":internal:",
        "00ff",
        "%",
        "&",
        "\\",
        "\u00e9",
    ]
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    verb=st.sampled_from(["NOTIFY", "NOTIFY SET", "URLFETCH", "GENURLAUTH", "RESETKEY"]),
    args=st.lists(_TOKENS, max_size=14),
)
def test_fuzzed_arguments_get_a_tagged_answer(server: MailhouseProcess, verb: str, args: list[str]) -> None:
    c = _fuzz_client(server)
    line = (verb + " " + "".join(args)).encode("utf-8")
    r = c.cmd(line)
    assert tagged(r).startswith((b"OK", b"NO", b"BAD")), (line, r)
    assert tagged(c.cmd("NOTIFY NONE")).startswith(b"OK"), line  # the same session goes on


_CLIENTS: dict[int, RawIMAP] = {}


def _fuzz_client(server: MailhouseProcess) -> RawIMAP:
    """One session for every hypothesis example (a dropped connection fails the next one)."""
    c = _CLIENTS.get(id(server))
    if c is None:
        c = _CLIENTS[id(server)] = raw_client(server, "nu3")
    return c


def _q(url: bytes) -> bytes:
    return b'"' + url + b'"'  # "%" is no ATOM-CHAR (RFC 9051 §9): a URL goes as a quoted string


def _urlauth(c: RawIMAP, rump: str) -> bytes:
    r = c.cmd(f'GENURLAUTH "{rump}" INTERNAL')
    assert tagged(r).startswith(b"OK"), (rump, r)
    m = re.match(rb'\* GENURLAUTH "([^"]+)"$', r[0])
    assert m is not None, r
    return m.group(1)


def test_urlauth_without_uidvalidity(server: MailhouseProcess) -> None:
    c = raw_client(server, "nu1")
    try:
        uid = _append(c, "INBOX", MESSAGE)
        base = f"imap://nu1%40example.org@{HOST}/INBOX/;uid={uid}"
        who = ";urlauth=user+nu1%40example.org"
        whole = _urlauth(c, base + who)  # was NO [BADURL] "... with UIDVALIDITY"
        assert whole.startswith((base + who + ":internal:").encode())
        r = c.cmd(b"URLFETCH " + _q(whole))
        assert (
            tagged(r).startswith(b"OK")
            and r[0] == b'* URLFETCH "' + whole + b'" {%d}\r\n' % len(MESSAGE) + MESSAGE
        ), r
        # ;section= and ;partial= (RFC 5092 §6): BODY[1] octets as stored, then a range of them
        sec = _urlauth(c, base + "/;section=1" + who)
        r = c.cmd(b"URLFETCH " + _q(sec))
        assert r[0].endswith(b" {%d}\r\n" % len(QP_BODY) + QP_BODY) or r[0].endswith(
            b' "' + QP_BODY + b'"'
        ), r
        part = _urlauth(c, base + "/;section=1/;partial=2.5" + who)
        r = c.cmd(b"URLFETCH " + _q(part))
        assert r[0] == b'* URLFETCH "' + part + b'" "' + QP_BODY[2:7] + b'"', r
        # RFC 5524: BINARY is the content-transfer-decoded part, BODYPARTSTRUCTURE its structure
        r = c.cmd(b"URLFETCH (" + _q(sec) + b" BINARY)")
        decoded = "caf\u00e9 hello=world!".encode()
        assert (
            r[0].replace(b"~{", b"{")
            == b'* URLFETCH "' + sec + b'" (BINARY {%d}\r\n' % len(decoded) + decoded + b")"
        ), r  # a literal8 is only needed for NUL (RFC 3516 §4.2)
        r = c.cmd(b"URLFETCH (" + _q(sec) + b" BODYPARTSTRUCTURE)")
        assert r[0] == (
            b'* URLFETCH "' + sec + b'" (BODYPARTSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL '
            b'"quoted-printable" %d 1 NIL NIL NIL NIL))' % len(QP_BODY)
        ), r
        # both: the structure gives the size and lines of what BINARY sends (as Dovecot 2.3)
        r = c.cmd(b"URLFETCH (" + _q(sec) + b" BINARY BODYPARTSTRUCTURE)")
        assert r[0].replace(b"~{", b"{") == (
            b'* URLFETCH "' + sec + b'" (BODYPARTSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL '
            b'"quoted-printable" %d 0 NIL NIL NIL NIL)) (BINARY {%d}\r\n'
            % (len(decoded), len(decoded))
            + decoded
            + b")"
        ), r
        b64 = _urlauth(c, base + "/;section=2" + who)
        r = c.cmd(b"URLFETCH (" + _q(b64) + b" BINARY)")
        assert r[0] == b'* URLFETCH "' + b64 + b'" (BINARY ~{8}\r\n' + bytes(range(8)) + b")", r
        # another user's URL, and one for a mailbox recreated since (new UIDVALIDITY): NIL
        assert tagged(c.cmd("CREATE Tmp")).startswith(b"OK")
        tuid = _append(c, "Tmp", MESSAGE)
        tmp = _urlauth(c, f"imap://nu1%40example.org@{HOST}/Tmp/;uid={tuid}{who}")
        assert tagged(c.cmd("DELETE Tmp")).startswith(b"OK")
        assert tagged(c.cmd("CREATE Tmp")).startswith(b"OK")
        _append(c, "Tmp", MESSAGE)  # the same UID again, in a mailbox with a new UIDVALIDITY
        r = c.cmd(b"URLFETCH " + _q(tmp))
        assert r[0] == b'* URLFETCH "' + tmp + b'" NIL', r
        other = raw_client(server, "nu2")
        try:
            r = other.cmd(b"URLFETCH " + _q(whole))
            assert r[0].endswith(b" NIL"), r
        finally:
            other.close()
        # the mail-domain spelling imaptest uses: unqualified user, the user's domain as host
        alt = _urlauth(c, f"imap://nu1@example.org/INBOX/;uid={uid};urlauth=user+nu1@example.org")
        r = c.cmd(b"URLFETCH " + _q(alt))
        assert r[0] == b'* URLFETCH "' + alt + b'" {%d}\r\n' % len(MESSAGE) + MESSAGE, r
        for bad in ("imap://nu2@example.org/INBOX/", "imap://nu1@evil.example/INBOX/"):
            r = c.cmd(f'GENURLAUTH "{bad};uid={uid};urlauth=anonymous" INTERNAL')
            assert tagged(r).startswith(b"NO [BADURL]"), r
        # RESETKEY kills it (RFC 4467 §6.2)
        assert tagged(c.cmd("RESETKEY INBOX")).startswith(b"OK")
        r = c.cmd(b"URLFETCH " + _q(whole))
        assert r[0] == b'* URLFETCH "' + whole + b'" NIL', r
    finally:
        c.close()


# ---------------------------------------------------------------------------- against Dovecot

DOVECOT_URLAUTH = """
imap_urlauth_host = localhost
protocol imap {
  imap_metadata = yes
}
mail_attribute_dict = file:%h/dovecot-attributes
service imap-urlauth-login {
  chroot =
}
"""
NESTED = (
    b"From: a@b.example\r\nTo: c@d.example\r\nSubject: urltest\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="xx"\r\n\r\npreamble\r\n--xx\r\n'
    b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 hello=3Dworld=\r\n!\r\n--xx\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgc=\r\n"
    b"--xx\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: x-unprintable\r\n\r\n"
    b"nothing to see here\r\n--xx\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y.example\r\n"
    b"Subject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVsbG8gd29ybGQ=\r\n--xx--\r\n"
)
# (section/partial tail, URLFETCH forms) compared with Dovecot 2.3. Left out, because Dovecot 2.3.19
# drops the connection on them: BINARY of the whole message, BINARY of an x-unprintable part,
# and BINARY together with BODYPARTSTRUCTURE (checked against RFC 5524 below instead). A part
# that does not exist is NIL here (RFC 4467 §6.3: "NIL if the URL is invalid for any reason");
# Dovecot answers an empty string for BODY/BINARY there, so it is not compared either.
ALL_FORMS = ("{u}", "({u} BODY)", "({u} BINARY)", "({u} BODYPARTSTRUCTURE)")
URL_CASES = [
    ("", ("{u}", "({u} BODY)", "({u} BODYPARTSTRUCTURE)")),
    ("/;section=1", ALL_FORMS),
    ("/;section=2", ALL_FORMS),
    ("/;section=3", ("{u}", "({u} BODY)", "({u} BODYPARTSTRUCTURE)")),
    ("/;section=4", ("{u}", "({u} BODY)", "({u} BODYPARTSTRUCTURE)")),
    ("/;section=4.1", ALL_FORMS),
    ("/;section=4.TEXT", ALL_FORMS),
    ("/;section=HEADER", ALL_FORMS),
    ("/;section=1.MIME", ALL_FORMS),
    ("/;section=1/;partial=2.5", ALL_FORMS),
    ("/;section=2/;partial=1", ALL_FORMS),
    ("/;partial=0.10", ("{u}", "({u} BODY)")),
]
_STR = re.compile(rb'"((?:[^"\\]|\\.)*)"|~?\{(\d+)\}\r\n')


def _canon(data: bytes) -> bytes:
    """A response with every string as ``{n}`` + octets: quoted vs literal vs literal8 is the
    server's choice (RFC 9051 §4.3, RFC 3516 §4.2), not a difference."""
    out, pos = b"", 0
    while (m := _STR.search(data, pos)) is not None:
        out += data[pos : m.start()]
        if m.group(2) is not None:
            n = int(m.group(2))
            s, pos = data[m.end() : m.end() + n], m.end() + n
        else:
            s, pos = re.sub(rb"\\(.)", rb"\1", m.group(1)), m.end()
        out += b"{%d}" % len(s) + s
    return out + data[pos:]


def _fetch_all(c: object, base: str, access: str, uid: int) -> dict[tuple[str, str], bytes]:
    out: dict[tuple[str, str], bytes] = {}
    for tail, forms in URL_CASES:
        untagged, _ = _run(c, f'GENURLAUTH "{base}/INBOX/;uid={uid}{tail};urlauth=user+{access}" INTERNAL')
        m = re.match(rb'\* GENURLAUTH "?([^" \r]+)', untagged[0])
        assert m is not None, untagged
        url = m.group(1)
        for form in forms:
            untagged, status = _run(c, "URLFETCH " + form.format(u='"' + url.decode() + '"'))
            # Dovecot adds "* NO Failed to fetch ..." for a NIL: only the URLFETCH data is compared
            untagged = [ln for ln in untagged if ln.startswith(b"* URLFETCH ")]
            assert status.startswith(b"OK") and len(untagged) == 1, (tail, form, untagged, status)
            line = untagged[0].rstrip(b"\r\n")
            prefix = b'* URLFETCH "' + url + b'" '
            if not line.startswith(prefix):
                prefix = b"* URLFETCH " + url + b" "
            assert line.startswith(prefix), line
            out[(tail, form)] = _canon(line[len(prefix) :])
    return out


def _run(c: object, cmd: str) -> tuple[list[bytes], bytes]:
    if isinstance(c, PlainIMAP):
        untagged, status = c.cmd(cmd, check=False)
        return untagged, status.split(b" ", 1)[1]
    assert isinstance(c, RawIMAP)
    r = c.cmd(cmd)
    return [ln + b"\r\n" for ln in r[:-1]], tagged(r)


@pytest.fixture(scope="module")
def dovecot(dovecot_factory: Any) -> Any:
    """A Dovecot peer that can do URLAUTH: metadata on, a URLAUTH host, a user name without "@"
    (Dovecot 2.3 cannot parse a %40 in a URL's user)."""
    return dovecot_factory(users={"uu": "pw"}, pop3_port=0, extra_conf=DOVECOT_URLAUTH)


def _dovecot_client(dc: Any) -> PlainIMAP:
    d = PlainIMAP(dc.host, dc.imap_port)
    d.cmd("LOGIN uu pw")
    return d


NOTIFY_TABLE = [
    "NOTIFY SET (MAILBOXES INBOX (MessageExpunge))",  # issue 13: valid (RFC 5465 §5)
    "NOTIFY SET (MAILBOXES INBOX (MessageNew))",
    "NOTIFY SET (MAILBOXES INBOX (FlagChange))",
    "NOTIFY SET (MAILBOXES INBOX (MessageNew MessageExpunge FlagChange))",
    "NOTIFY SET (MAILBOXES INBOX (MailboxName))",
    "NOTIFY SET (MAILBOXES INBOX (SubscriptionChange))",
    "NOTIFY SET (MAILBOXES INBOX (AnnotationChange))",
    "NOTIFY SET (MAILBOXES INBOX (Bogus))",
    "NOTIFY SET (MAILBOXES INBOX NONE)",
    "NOTIFY SET (MAILBOXES INBOX ())",
    "NOTIFY SET (MAILBOXES (INBOX Sent) (MessageExpunge))",
    "NOTIFY SET (MAILBOXES NoSuchBox (MessageExpunge))",
    "NOTIFY SET (SUBTREE INBOX (MessageExpunge))",
    "NOTIFY SET (SUBTREE-ONE INBOX (MessageExpunge))",
    "NOTIFY SET (INBOXES (MessageExpunge))",
    "NOTIFY SET (PERSONAL (MessageExpunge))",
    "NOTIFY SET (SUBSCRIBED (MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew))",
    "NOTIFY SET (SELECTED (FlagChange))",
    "NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange))",
    "NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge))",
    "NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageExpunge))",
    "NOTIFY SET (PERSONAL (MessageExpunge)) (INBOXES (MessageNew))",
    "NOTIFY SET STATUS (PERSONAL (MessageExpunge))",
    "NOTIFY SET (SELECTED NONE)",
    "NOTIFY SET (",
    "NOTIFY SET (MAILBOXES",
    "NOTIFY NONE",
]
# Deliberate differences, not in the table: Mailhouse supports MailboxMetadataChange and
# ServerMetadataChange (Dovecot 2.3: NO [BADEVENT]); (SELECTED (MailboxName)) is BAD here
# (RFC 5465 §6.1: message events only for the selected mailbox), Dovecot accepts it.


def test_notify_set_answers_as_dovecot(server: MailhouseProcess, dovecot: Any) -> None:
    d = _dovecot_client(dovecot)
    c = raw_client(server, "nu3")
    try:
        for cmd in NOTIFY_TABLE:
            _, theirs = d.cmd(cmd, check=False)
            ours = tagged(c.cmd(cmd))
            assert ours.split(b" ")[0] == theirs.split(b" ")[1], (cmd, ours, theirs)
    finally:
        c.close()
        d.sock.close()


def test_urlfetch_matches_dovecot(server: MailhouseProcess, dovecot: Any) -> None:
    d = _dovecot_client(dovecot)
    d.append("INBOX", NESTED)
    theirs = _fetch_all(d, "imap://uu@localhost", "uu", 1)
    d.sock.close()
    c = raw_client(server, "nu2")
    try:
        uid = _append(c, "INBOX", NESTED)
        ours = _fetch_all(c, f"imap://nu2%40example.org@{HOST}", "nu2%40example.org", uid)
        # RFC 5524 §5 ABNF (url-metadata = 1*(SP "(" url-metadata-el ")")): one group per item;
        # an undecodable part has BINARY NIL next to its structure (imaptest urlauth-binary)
        url = _urlauth(
            c, f"imap://nu2%40example.org@{HOST}/INBOX/;uid={uid}/;section=3;urlauth=user+nu2%40example.org"
        )
        base = f"imap://nu2%40example.org@{HOST}/INBOX/;uid={uid}"
        missing = _urlauth(c, base + "/;section=9;urlauth=user+nu2%40example.org")
        for form in (b"%s", b"(%s BINARY)", b"(%s BODY)", b"(%s BODYPARTSTRUCTURE)"):
            r = c.cmd(b"URLFETCH " + form.replace(b"%s", _q(missing)))
            assert r[0] == b'* URLFETCH "' + missing + b'" NIL', r
        r = c.cmd(b"URLFETCH (" + _q(url) + b" BINARY BODYPARTSTRUCTURE)")
        assert (
            r[0]
            == b'* URLFETCH "'
            + url
            + b'" (BODYPARTSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "x-unprintable" 19 0 NIL NIL NIL NIL)) (BINARY NIL)'
        ), r
    finally:
        c.close()
    assert ours == theirs
