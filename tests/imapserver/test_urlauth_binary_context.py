"""End to end against a running server: RFC 5524 URLAUTH=BINARY (the "(url BINARY ...)"
URLFETCH form) and RFC 5267 CONTEXT=SEARCH / CONTEXT=SORT (RETURN (UPDATE), ADDTO/REMOVEFROM
with positions, CANCELUPDATE, NOUPDATE, PARTIAL)."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator

import pytest

from tests.imapserver.server_helpers import RawIMAP, raw_client, start_server, tagged
from tests.mailhouse_proc import MailhouseProcess

USERS = ("ub1", "ub2", "cs1", "cs2", "cs3", "cs4", "cs5", "cs9")

PAYLOAD = b"\x00\x01\x02binary\xff\xfe\r\nstuff\x00"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("ctx"), users=USERS)
    try:
        yield mh
    finally:
        mh.stop()


def _append(c: RawIMAP, mailbox: str, msg: bytes) -> int:
    c.n += 1
    tag = b"A%d" % c.n
    c.send(tag + b" APPEND " + mailbox.encode() + b" {%d}\r\n" % len(msg))
    assert c.line().startswith(b"+")
    c.send(msg + b"\r\n")
    r = c.until_tagged(tag)
    assert b" OK " in r[-1], r
    m = re.search(rb"APPENDUID \d+ (\d+)", r[-1])
    assert m, r
    return int(m.group(1))


def _msg(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return (
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: " + subject.encode() + b"\r\n"
        b"Message-ID: <" + str(time.time_ns()).encode() + b"@example.org>\r\n\r\n" + body
    )


def _multipart() -> bytes:
    att = base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    return (
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
        b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + att
        + b"--XX--\r\n"
    )


# ------------------------------------------------------------------ RFC 5524 URLAUTH=BINARY


def test_urlauth_binary_advertised(server: MailhouseProcess) -> None:
    c = raw_client(server, "ub1")
    try:
        caps = c.cmd("CAPABILITY")[0].split()
        assert b"URLAUTH" in caps and b"URLAUTH=BINARY" in caps
        assert b"CONTEXT=SEARCH" in caps and b"CONTEXT=SORT" in caps and b"ESORT" in caps
    finally:
        c.close()


def test_urlfetch_binary_end_to_end(server: MailhouseProcess) -> None:
    c = raw_client(server, "ub1")
    try:
        uid = _append(c, "INBOX", _multipart())
        r = c.cmd("SELECT INBOX")
        uidvalidity = re.search(rb"UIDVALIDITY (\d+)", b"\n".join(r)).group(1).decode()  # type: ignore[union-attr]
        rump = (
            f"imap://ub1%40example.org@localhost/INBOX;UIDVALIDITY={uidvalidity}/;UID={uid}"
            f"/;SECTION=2;URLAUTH=authuser"
        )
        r = c.cmd(f'GENURLAUTH "{rump}" INTERNAL')
        assert tagged(r).startswith(b"OK"), r
        url = re.match(rb'\* GENURLAUTH "([^"]+)"', r[0]).group(1)  # type: ignore[union-attr]
        q = b'"' + url + b'"'

        # RFC 5524: BINARY (decoded octets, literal8 since they hold NUL) and BODYPARTSTRUCTURE
        r = c.cmd(b"URLFETCH (" + q + b" BINARY BODYPARTSTRUCTURE)")
        assert tagged(r).startswith(b"OK"), r
        line = r[0]
        assert line.startswith(b"* URLFETCH " + q + b" (BODYPARTSTRUCTURE ("), line
        assert b"application" in line.lower() and b"octet-stream" in line.lower()
        assert b"(BINARY ~{%d}\r\n" % len(PAYLOAD) + PAYLOAD + b")" in line

        # BODY in the extended form: the encoded part wrapped in (BODY ...)
        r = c.cmd(b"URLFETCH (" + q + b" BODY)")
        assert r[0].startswith(b"* URLFETCH " + q + b" (BODY "), r
        assert base64.b64encode(PAYLOAD)[:10] in r[0]

        # neither BODY nor BINARY: only what was asked (here nothing but the URL)
        r = c.cmd(b"URLFETCH (" + q + b" BODYPARTSTRUCTURE)")
        assert b"(BODYPARTSTRUCTURE (" in r[0] and b"(BODY " not in r[0] and b"(BINARY" not in r[0]

        # the plain RFC 4467 form still works, mixed with the extended one
        r = c.cmd(b"URLFETCH " + q + b" (" + q + b" BINARY)")
        assert tagged(r).startswith(b"OK"), r
        assert r[0].startswith(b"* URLFETCH " + q + b" "), r[0]
        assert b"(BODY" not in r[0] and base64.b64encode(PAYLOAD)[:10] in r[0]
        assert r[1].startswith(b"* URLFETCH " + q + b" (BINARY ~{"), r[1]

        # a bad token yields NIL, not an error
        bad = q[:-5] + b'0000"'
        r = c.cmd(b"URLFETCH (" + bad + b" BINARY)")
        assert r[0] == b"* URLFETCH " + bad + b" NIL", r

        # syntax errors are BAD
        assert tagged(c.cmd(b"URLFETCH (" + q + b" BINARY BODY)")).startswith(b"BAD")
        assert tagged(c.cmd(b"URLFETCH (" + q + b" FOO)")).startswith(b"BAD")

        # another user may fetch an authuser URL with BINARY as well
        o = raw_client(server, "ub2")
        try:
            r = o.cmd(b"URLFETCH (" + q + b" BINARY)")
            assert b"(BINARY ~{%d}\r\n" % len(PAYLOAD) + PAYLOAD + b")" in r[0], r
        finally:
            o.close()
    finally:
        c.close()


# ------------------------------------------------------------------ RFC 5267 CONTEXT=SEARCH


def _wait_for(c: RawIMAP, pred: object, timeout: float = 10.0) -> list[bytes]:
    """NOOP until an untagged line satisfies ``pred``; all lines seen."""
    seen: list[bytes] = []
    end = time.time() + timeout
    while time.time() < end:
        seen += c.cmd("NOOP")
        if any(pred(ln) for ln in seen):  # type: ignore[operator]
            return seen
        time.sleep(0.05)
    raise AssertionError(f"never saw it: {seen!r}")


def test_context_search_addto_removefrom(server: MailhouseProcess) -> None:
    a = raw_client(server, "cs1")
    b = raw_client(server, "cs1")
    try:
        u1 = _append(a, "INBOX", _msg("match one"))
        _append(a, "INBOX", _msg("other"))
        assert tagged(a.cmd("SELECT INBOX")).startswith(b"OK")
        assert tagged(b.cmd("SELECT INBOX")).startswith(b"OK")

        b.n += 1
        b.send(b"S1 UID SEARCH RETURN (UPDATE) SUBJECT match\r\n")
        r = b.until_tagged(b"S1")
        assert tagged(r).startswith(b"OK") and b"NOUPDATE" not in r[-1], r
        assert r[0] == b'* ESEARCH (TAG "S1") UID ALL %d' % u1, r

        # another session appends a matching message: ADDTO
        u3 = _append(a, "INBOX", _msg("match three"))
        _append(a, "INBOX", _msg("not this"))
        seen = _wait_for(b, lambda ln: b"ADDTO" in ln)
        assert b'* ESEARCH (TAG "S1") UID ADDTO (0 %d)' % u3 in seen, seen

        # the other session flags and expunges the first match: REMOVEFROM
        assert tagged(a.cmd(f"UID STORE {u1} +FLAGS (\\Deleted)")).startswith(b"OK")
        assert tagged(a.cmd("EXPUNGE")).startswith(b"OK")
        seen = _wait_for(b, lambda ln: b"REMOVEFROM" in ln)
        assert b'* ESEARCH (TAG "S1") UID REMOVEFROM (0 %d)' % u1 in seen, seen

        # CANCELUPDATE ends it: a new match brings no more ADDTO
        assert tagged(b.cmd('CANCELUPDATE "S1"')).startswith(b"OK")
        _append(a, "INBOX", _msg("match four"))
        seen = _wait_for(b, lambda ln: b"EXISTS" in ln)
        assert not any(b"ADDTO" in ln for ln in seen), seen
    finally:
        a.close()
        b.close()


def test_context_search_time_relative_runs_in_full(server: MailhouseProcess) -> None:
    """YOUNGER (RFC 5032) depends on the clock, so the live search is re-run over every
    message after each change (contexts.py): new matches still arrive as ADDTO."""
    a = raw_client(server, "cs9")
    b = raw_client(server, "cs9")
    try:
        _append(a, "INBOX", _msg("nope"))
        assert tagged(a.cmd("SELECT INBOX")).startswith(b"OK")
        assert tagged(b.cmd("SELECT INBOX")).startswith(b"OK")
        b.n += 1
        b.send(b"S4 UID SEARCH RETURN (UPDATE) YOUNGER 100000 SUBJECT wanted\r\n")
        r = b.until_tagged(b"S4")
        assert tagged(r).startswith(b"OK") and not any(b" ALL " in ln for ln in r), r
        u2 = _append(a, "INBOX", _msg("wanted here"))
        seen = _wait_for(b, lambda ln: b"ADDTO" in ln)
        assert b'* ESEARCH (TAG "S4") UID ADDTO (0 %d)' % u2 in seen, seen
        assert tagged(a.cmd(f"UID STORE {u2} +FLAGS (\\Deleted)")).startswith(b"OK")
        assert tagged(a.cmd("EXPUNGE")).startswith(b"OK")
        seen = _wait_for(b, lambda ln: b"REMOVEFROM" in ln)
        assert b'* ESEARCH (TAG "S4") UID REMOVEFROM (0 %d)' % u2 in seen, seen
    finally:
        a.close()
        b.close()


def test_context_search_message_numbers_and_flags(server: MailhouseProcess) -> None:
    a = raw_client(server, "cs2")
    b = raw_client(server, "cs2")
    try:
        for i in range(3):
            _append(a, "INBOX", _msg(f"m{i}"))
        assert tagged(a.cmd("SELECT INBOX")).startswith(b"OK")
        assert tagged(b.cmd("SELECT INBOX")).startswith(b"OK")
        b.n += 1
        b.send(b"S2 SEARCH RETURN (UPDATE) FLAGGED\r\n")
        r = b.until_tagged(b"S2")
        assert tagged(r).startswith(b"OK"), r
        assert not any(b" ALL " in ln for ln in r), r  # nothing matches yet
        assert tagged(a.cmd("STORE 2 +FLAGS (\\Flagged)")).startswith(b"OK")
        seen = _wait_for(b, lambda ln: b"ADDTO" in ln)
        assert b'* ESEARCH (TAG "S2") ADDTO (0 2)' in seen, seen
        assert tagged(a.cmd("STORE 2 -FLAGS (\\Flagged)")).startswith(b"OK")
        seen = _wait_for(b, lambda ln: b"REMOVEFROM" in ln)
        assert b'* ESEARCH (TAG "S2") REMOVEFROM (0 2)' in seen, seen
    finally:
        a.close()
        b.close()


def test_context_limits_and_sort(server: MailhouseProcess) -> None:
    c = raw_client(server, "cs3")
    try:
        _append(c, "INBOX", _msg("x"))
        assert tagged(c.cmd("SELECT INBOX")).startswith(b"OK")
        # RFC 5267 §4.3: UPDATE under a tag already live is rejected with BAD (and has no effect)
        c.send(b"D1 SEARCH RETURN (UPDATE) ALL\r\n")
        assert b"NOUPDATE" not in c.until_tagged(b"D1")[-1]
        c.send(b"D1 SORT RETURN (UPDATE) (ARRIVAL) UTF-8 ALL\r\n")
        r = c.until_tagged(b"D1")
        assert r[-1].startswith(b"D1 BAD"), r
        # the limit (16, SEARCH and SORT together): the 17th is declined with an untagged
        # NO [NOUPDATE] and the command still answers (RFC 5267 §4.3.1)
        for i in range(2, 17):
            verb = b"SORT RETURN (UPDATE) (SUBJECT) UTF-8" if i % 2 else b"SEARCH RETURN (UPDATE)"
            c.send(b"D%d %s ALL\r\n" % (i, verb))
            r = c.until_tagged(b"D%d" % i)
            assert r[-1].startswith(b"D%d OK" % i) and not any(b"NOUPDATE" in ln for ln in r), r
        c.send(b"D17 SORT RETURN (UPDATE COUNT) (SUBJECT) UTF-8 ALL\r\n")
        r = c.until_tagged(b"D17")
        assert r == [
            b'* ESEARCH (TAG "D17") COUNT 1',
            b'* NO [NOUPDATE "D17"] Too many update contexts',
            r[-1],
        ], r
        assert r[-1].startswith(b"D17 OK"), r
        # RFC 5267 §4.4: one PARTIAL or ALL at most
        assert tagged(c.cmd("SORT RETURN (PARTIAL 1:2 ALL) (SUBJECT) UTF-8 ALL")).startswith(b"BAD")
        assert tagged(c.cmd('CANCELUPDATE "D2" "D3"')).startswith(b"OK")
        c.send(b"D18 SEARCH RETURN (UPDATE) ALL\r\n")
        r = c.until_tagged(b"D18")
        assert not any(b"NOUPDATE" in ln for ln in r), r
        # CANCELUPDATE needs quoted tags and a selected mailbox
        assert tagged(c.cmd("CANCELUPDATE D1")).startswith(b"BAD")
        assert tagged(c.cmd('CANCELUPDATE "D1" "nope"')).startswith(b"OK")
        assert tagged(c.cmd("UNSELECT")).startswith(b"OK")
        assert tagged(c.cmd('CANCELUPDATE "D1"')).startswith(b"BAD")
    finally:
        c.close()


# ------------------------------------------------------------------ RFC 5267 CONTEXT=SORT


def _uid_set(*uids: int) -> bytes:
    from mailhouse.imapserver.query import ordered_set

    return ordered_set(list(uids)).encode()


def test_context_sort_positions_two_sessions(server: MailhouseProcess) -> None:
    a = raw_client(server, "cs4")
    b = raw_client(server, "cs4")
    try:
        ub = _append(a, "INBOX", _msg("b"))
        ud = _append(a, "INBOX", _msg("d"))
        uf = _append(a, "INBOX", _msg("f"))
        assert tagged(a.cmd("SELECT INBOX")).startswith(b"OK")
        assert tagged(b.cmd("SELECT INBOX")).startswith(b"OK")
        b.send(b"S1 UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL\r\n")
        r = b.until_tagged(b"S1")
        assert r[0] == b'* ESEARCH (TAG "S1") UID ALL %d:%d' % (ub, uf) and r[-1].startswith(b"S1 OK"), r
        b.send(b"S2 SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 UNKEYWORD $Junk\r\n")
        r = b.until_tagged(b"S2")
        assert r[0] == b'* ESEARCH (TAG "S2") ALL 3,2,1', r

        # another session appends "c": position 2 in S1 (b c d f), 3 in S2 (f d c b),
        # after the EXISTS that makes message 4 valid (RFC 5267 §4.3.3)
        uc = _append(a, "INBOX", _msg("c"))
        seen = _wait_for(b, lambda ln: b"ADDTO" in ln)
        assert b'* ESEARCH (TAG "S1") UID ADDTO (2 %d)' % uc in seen, seen
        assert b'* ESEARCH (TAG "S2") ADDTO (3 4)' in seen, seen
        assert seen.index(b"* 4 EXISTS") < seen.index(b'* ESEARCH (TAG "S2") ADDTO (3 4)'), seen

        # a keyword set elsewhere takes "d" (message 2, at position 2 of f d c b) out of S2
        assert tagged(a.cmd(f"UID STORE {ud} +FLAGS ($Junk)")).startswith(b"OK")
        seen = _wait_for(b, lambda ln: b"REMOVEFROM" in ln)
        assert b'* ESEARCH (TAG "S2") REMOVEFROM (2 2)' in seen, seen
        assert not any(b'"S1"' in ln for ln in seen), seen

        # an expunge of "b": REMOVEFROM in both, before the EXPUNGE (RFC 5267 §4.3.4)
        assert tagged(a.cmd(f"UID STORE {ub} +FLAGS (\\Deleted)")).startswith(b"OK")
        assert tagged(a.cmd("EXPUNGE")).startswith(b"OK")
        seen = _wait_for(b, lambda ln: ln == b"* 1 EXPUNGE")
        i = seen.index(b"* 1 EXPUNGE")
        assert seen.index(b'* ESEARCH (TAG "S1") UID REMOVEFROM (1 %d)' % ub) < i, seen
        assert seen.index(b'* ESEARCH (TAG "S2") REMOVEFROM (3 1)') < i, seen

        # this session's own changes count too: STORE here, then a new "a" at the front
        r = b.cmd(f"UID STORE {ud} -FLAGS ($Junk)")
        assert tagged(r).startswith(b"OK"), r
        assert b'* ESEARCH (TAG "S2") ADDTO (2 1)' in r, r  # f d c; "d" is now message 1
        ua = _append(a, "INBOX", _msg("a"))
        seen = _wait_for(b, lambda ln: b'(TAG "S1") UID ADDTO' in ln)
        assert b'* ESEARCH (TAG "S1") UID ADDTO (1 %d)' % ua in seen, seen
        # the final results equal a fresh SORT of the same program
        r = b.cmd("UID SORT RETURN (ALL) (SUBJECT) UTF-8 ALL")
        assert r[0].endswith(b"UID ALL " + _uid_set(ua, uc, ud, uf)), r

        assert tagged(b.cmd('CANCELUPDATE "S1" "S2"')).startswith(b"OK")
        _append(a, "INBOX", _msg("e"))
        seen = _wait_for(b, lambda ln: b"EXISTS" in ln)
        assert not any(b"ADDTO" in ln for ln in seen), seen
    finally:
        a.close()
        b.close()


def test_esort_partial_and_search_expunge_message_numbers(server: MailhouseProcess) -> None:
    a = raw_client(server, "cs5")
    b = raw_client(server, "cs5")
    try:
        for s in ("x3", "x1", "x2"):
            _append(a, "INBOX", _msg(s))
        assert tagged(a.cmd("SELECT INBOX")).startswith(b"OK")
        assert tagged(b.cmd("SELECT INBOX")).startswith(b"OK")
        # ESORT PARTIAL (RFC 5267 §4.4): positions in the sorted result
        r = b.cmd("SORT RETURN (PARTIAL 2:3) (SUBJECT) UTF-8 ALL")
        assert r[0].endswith(b"PARTIAL (2:3 3,1)"), r
        # a message-number SEARCH context: the REMOVEFROM for an expunged match precedes
        # its EXPUNGE (numbers still valid, RFC 5267 §4.3.4)
        b.send(b"E1 SEARCH RETURN (UPDATE) SUBJECT x\r\n")
        r = b.until_tagged(b"E1")
        assert r[0] == b'* ESEARCH (TAG "E1") ALL 1:3', r
        assert tagged(a.cmd("STORE 2 +FLAGS (\\Deleted)")).startswith(b"OK")
        assert tagged(a.cmd("EXPUNGE")).startswith(b"OK")
        seen = _wait_for(b, lambda ln: ln == b"* 2 EXPUNGE")
        assert seen.index(b'* ESEARCH (TAG "E1") REMOVEFROM (0 2)') < seen.index(b"* 2 EXPUNGE"), seen
        # an expunge reported late: during FETCH (no EXPUNGE allowed, RFC 9051 §7.4.1) the
        # message stays in the result; the REMOVEFROM comes with the EXPUNGE, just before it
        assert tagged(a.cmd("UID STORE 1:* +FLAGS (\\Deleted)")).startswith(b"OK")
        assert tagged(a.cmd("EXPUNGE")).startswith(b"OK")
        time.sleep(0.3)
        r = b.cmd("FETCH 1:* (FLAGS)")
        assert tagged(r).startswith(b"OK") and not any(b"REMOVEFROM" in ln or b"EXPUNGE" in ln for ln in r), r
        r = b.cmd("NOOP")
        assert r[:3] == [b'* ESEARCH (TAG "E1") REMOVEFROM (0 1:2)', b"* 2 EXPUNGE", b"* 1 EXPUNGE"], r
    finally:
        a.close()
        b.close()
