"""OBJECTID (RFC 8474) and PREVIEW (RFC 8970) over real sockets (issue 13 §5).

* MAILBOXID in CREATE's OK, SELECT's ``OK [MAILBOXID (...)]``, STATUS and LIST RETURN (STATUS);
  kept by RENAME, new for a mailbox deleted and created again under the same name.
* EMAILID kept by MOVE and COPY, different for a second APPEND of the same octets; SEARCH
  EMAILID finds the message.
* THREADID shared by a root and its replies (References / In-Reply-To), different for an
  unrelated message; SEARCH THREADID finds the thread; a message without any id is its own
  thread.
* Every id is an RFC 8474 §7 objectid.
* FETCH PREVIEW / PREVIEW (LAZY): the first text part (plain preferred in an alternative), HTML
  stripped, white space collapsed, at most 200 characters, UTF-8 (a literal without UTF8=ACCEPT);
  "" for a message without text; the same for a big (streamed) message; both advertised.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.imapserver.imap_wire import RawIMAP, fetch_items
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawIMAP]:
    mh = MailhouseProcess(
        tmp_path_factory.mktemp("objid"), services=("imap",), extra="[auth]\nallow_plaintext = true\n"
    )
    mh.add_domain("example.org")
    mh.add_user("o@example.org", PASSWORD)
    mh.start()
    try:
        c = RawIMAP(*mh.addr("imap"))
        c.cmd(f'LOGIN "o@example.org" "{PASSWORD}"')
        yield c
        c.close()
    finally:
        mh.stop()


def _msg(headers: str, body: str = "Hello.\r\n") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()


def _code(lines: list[bytes], tagged: bytes, name: bytes) -> bytes:
    for ln in [*lines, tagged]:
        m = re.search(rb"\[" + name + rb" \(([^)]*)\)\]", ln)
        if m:
            return m.group(1)
    raise AssertionError(f"no {name!r} in {lines} {tagged!r}")


def _status_id(c: RawIMAP, box: str) -> bytes:
    r, _ = c.cmd(f"STATUS {box} (MAILBOXID MESSAGES)")
    m = re.search(rb"MAILBOXID \(([^)]*)\)", b"".join(r))
    assert m, r
    return m.group(1)


def test_capabilities(client: RawIMAP) -> None:
    caps = b"".join(client.cmd("CAPABILITY")[0]).split()
    assert b"OBJECTID" in caps and b"PREVIEW" in caps


def test_mailboxid_create_select_status_list_rename(client: RawIMAP) -> None:
    r, t = client.cmd("CREATE idbox")
    created = _code(r, t, b"MAILBOXID")
    assert OBJECTID.fullmatch(created)
    r, t = client.cmd("SELECT idbox")
    assert _code(r, t, b"MAILBOXID") == created
    assert _status_id(client, "idbox") == created
    r, _ = client.cmd('LIST "" "idbox" RETURN (STATUS (MAILBOXID))')
    assert b"MAILBOXID (" + created + b")" in b"".join(r)
    client.cmd("UNSELECT")
    client.cmd("RENAME idbox idbox2")  # RFC 8474 §4.2: RENAME keeps the id
    assert _status_id(client, "idbox2") == created
    r, t = client.cmd("CREATE other")
    assert _code(r, t, b"MAILBOXID") not in (created, b"")
    client.cmd("DELETE idbox2")
    r, t = client.cmd("CREATE idbox2")  # same name again: a new mailbox, a new id (§4)
    assert _code(r, t, b"MAILBOXID") != created


def _ids(c: RawIMAP, seqs: str = "1:*") -> dict[int, dict[str, object]]:
    return fetch_items(c.cmd(f"FETCH {seqs} (UID EMAILID THREADID)")[0])


def test_emailid_copy_move_append_and_search(client: RawIMAP) -> None:
    for b in ("e1", "e2", "e3"):
        client.cmd(f"CREATE {b}")
    m = _msg("From: a@x.test\nSubject: keep\nMessage-ID: <keep@x.test>")
    client.append("e1", m)
    client.append("e1", m)  # the same octets again: another message
    client.cmd("SELECT e1")
    got = _ids(client)
    (a,), (b,) = got[1]["EMAILID"], got[2]["EMAILID"]
    assert OBJECTID.fullmatch(a) and OBJECTID.fullmatch(b) and a != b
    r, _ = client.cmd(f"SEARCH EMAILID {a.decode()}")
    assert b"* SEARCH 1\r\n" in r
    client.cmd("COPY 1 e2")
    client.cmd("MOVE 2 e3")
    client.cmd("SELECT e2")
    assert _ids(client)[1]["EMAILID"] == [a]  # §5.1: COPY may keep it (we do)
    client.cmd("SELECT e3")
    assert _ids(client)[1]["EMAILID"] == [b]  # §5.1: MOVE keeps it


def test_threadid_follows_references(client: RawIMAP) -> None:
    client.cmd("CREATE th")
    msgs = [
        _msg("From: a@x.test\nSubject: root\nMessage-ID: <root@x.test>"),
        _msg("From: b@x.test\nSubject: Re: root\nMessage-ID: <r1@x.test>\nIn-Reply-To: <root@x.test>"),
        _msg(
            "From: c@x.test\nSubject: Re: root\nMessage-ID: <r2@x.test>\nIn-Reply-To: <r1@x.test>\n"
            "References: <root@x.test>\n <r1@x.test>"
        ),
        _msg("From: d@x.test\nSubject: other\nMessage-ID: <other@x.test>"),
        _msg("From: e@x.test\nSubject: no ids at all"),
        _msg("From: e@x.test\nSubject: no ids at all"),
    ]
    for m in msgs:
        client.append("th", m)
    client.cmd("SELECT th")
    got = _ids(client)
    tids = [got[i]["THREADID"][0] for i in range(1, 7)]
    assert all(OBJECTID.fullmatch(t) for t in tids)
    assert tids[0] == tids[1] == tids[2]
    assert len({tids[0], tids[3], tids[4], tids[5]}) == 4
    r, _ = client.cmd(f"SEARCH THREADID {tids[0].decode()}")
    assert b"* SEARCH 1 2 3\r\n" in r
    r, _ = client.cmd(f"UID SEARCH RETURN (COUNT) THREADID {tids[3].decode()}")
    assert b"COUNT 1" in b"".join(r)
    client.cmd("COPY 1:3 e2")  # the id is the thread's, in any mailbox
    client.cmd("SELECT e2")
    assert {v["THREADID"][0] for k, v in _ids(client).items() if k > 1} == {tids[0]}


HTML = (
    'From: h@x.test\nSubject: html\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"',
    '--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    "--b2\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    "<html><head><style>p {color: red}</style><title>T</title></head><body><p>Gr=C3=BC=C3=9Fe,&nbsp;"
    "<b>Welt</b> &amp; co</p>\r\n<script>alert(1)</script><p>second\r\n\r\n   para</p></body></html>\r\n"
    "--b2--\r\n"
    "--b1\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nnot this\r\n"
    "--b1--\r\n",
)


def _preview(c: RawIMAP, seq: int, lazy: bool = False) -> object:
    items = "PREVIEW (LAZY)" if lazy else "PREVIEW"
    return fetch_items(c.cmd(f"FETCH {seq} ({items})")[0])[seq]["PREVIEW"]


def test_preview(client: RawIMAP) -> None:
    client.cmd("CREATE pv")
    long_text = "word " * 100
    alt = (
        "From: a@x.test\nSubject: alt\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=z",
        "--z\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
        "--z\r\nContent-Type: text/plain\r\n\r\nplain   version\r\n\twith tab\r\n--z--\r\n",
    )
    client.append(
        "pv", _msg("From: a@x.test\nSubject: plain", "  First line\r\n\r\nsecond " + long_text + "\r\n")
    )
    client.append("pv", _msg(*HTML))
    client.append("pv", _msg(*alt))
    client.append("pv", _msg("From: a@x.test\nSubject: empty\nContent-Type: image/png", "iVBORw0KGgo=\r\n"))
    client.cmd("SELECT pv")
    first = _preview(client, 1)
    assert isinstance(first, bytes)
    text = first.decode()
    assert text.startswith("First line second word word") and len(text) <= 200 and "  " not in text
    assert len(text) >= 195  # cut at 200 characters, not at the first line
    assert _preview(client, 2).decode() == "Grüße, Welt & co second para"  # &nbsp; is white space too
    assert _preview(client, 3) == b"plain version with tab"
    assert _preview(client, 4) == b""
    assert _preview(client, 2, lazy=True) == _preview(client, 2)
    # 8-bit text is a literal for a client that did not enable UTF8=ACCEPT
    raw = b"".join(client.cmd("FETCH 2 (PREVIEW)")[0])
    assert re.search(rb"PREVIEW \{\d+\}\r\n", raw)


def test_preview_and_threadid_of_a_big_message(client: RawIMAP) -> None:
    from mailhouse.imapserver.fetch_stream import STREAM_MIN

    client.cmd("CREATE big")
    body = (
        "<html><body><p>Big   news:</p>"
        + "<!-- pad -->" * (STREAM_MIN // 10)
        + "<p>end</p></body></html>\r\n"
    )
    big = _msg(
        "From: a@x.test\nSubject: Re: root\nMessage-ID: <big@x.test>\nReferences: <root@x.test>\n"
        "Content-Type: text/html; charset=us-ascii",
        body,
    )
    assert len(big) > STREAM_MIN
    client.append("big", big)
    client.cmd("SELECT big")
    got = fetch_items(client.cmd("FETCH 1 (PREVIEW THREADID EMAILID)")[0])[1]
    assert got["PREVIEW"] == b"Big news:"  # only the first PREVIEW_WINDOW octets are read
    client.cmd("SELECT th")
    assert got["THREADID"] == _ids(client, "1")[1]["THREADID"]


def test_bad_preview_modifier(client: RawIMAP) -> None:
    _, tagged = client.cmd("FETCH 1 (PREVIEW (EAGER))", check=False)
    assert b" BAD " in tagged


# ------------------------------------------------------------------ PREVIEW against Dovecot

DOVECOT_CASES = [
    _msg("From: a@x.test\nSubject: plain", "  First line\r\n\r\nsecond " + "word " * 100 + "\r\n"),
    _msg(
        "From: a@x.test\nSubject: alt\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=z",
        "--z\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
        "--z\r\nContent-Type: text/plain\r\n\r\nplain   version\r\n\twith tab\r\n--z--\r\n",
    ),
    _msg("From: a@x.test\nSubject: empty\nContent-Type: image/png", "iVBORw0KGgo=\r\n"),
    _msg(
        "From: a@x.test\nSubject: q", "Hi Bob,\r\n\r\n> quoted text\r\n> more\r\nMy answer &amp; <b>x</b>\r\n"
    ),
    _msg(
        "From: a@x.test\nSubject: qp\nContent-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable",
        "Gr=FC=DFe aus K=F6ln=\r\n, sch=F6n.\r\n",
    ),
    _msg(
        "From: a@x.test\nSubject: b64\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
        "w4l0w6kgw6AgUGFyaXM=\r\n",
    ),
]


def test_preview_matches_dovecot(dovecot_factory: object, client: RawIMAP) -> None:
    """Dovecot 2.3 (PREVIEW capability) is the reference for plain text, alternatives, quoted
    replies, transfer encodings and charsets. Known difference, not compared: in HTML Dovecot
    keeps the <title> text and U+00A0; we drop the head and treat U+00A0 as white space."""
    dc = dovecot_factory(users={"p@x.test": "pw"}, pop3_port=0)  # type: ignore[operator]
    theirs = RawIMAP(dc.host, dc.imap_port)
    theirs.cmd('LOGIN "p@x.test" "pw"')
    out = []
    for c in (theirs, client):
        c.cmd("CREATE dpv")
        for m in DOVECOT_CASES:
            c.append("dpv", m)
        c.cmd("SELECT dpv")
        got = fetch_items(c.cmd("FETCH 1:* (PREVIEW)")[0])
        out.append([got[i]["PREVIEW"] for i in sorted(got)])
    theirs.close()
    assert out[1] == out[0]
