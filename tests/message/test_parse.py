from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.message.parse import MAX_DEPTH, iter_parts, parse_message

CORPUS = Path(__file__).parent / "corpus"


def body(raw, p):
    return raw[p.body_start : p.body_end]


def test_simple_defaults_and_case(corpus):
    raw = corpus("simple.eml")
    t = parse_message(raw)
    assert (t.type, t.subtype) == ("text", "plain")
    assert (t.type_raw, t.subtype_raw) == (b"TEXT", b"PLAIN")
    assert t.params == {"charset": "US-ASCII"}
    assert t.cte == "7bit" and t.cte_raw is None
    assert not t.children
    assert body(raw, t) == b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
    assert raw[t.header_start : t.header_end].endswith(b"CHARSET=US-ASCII\r\n\r\n")
    assert [n for n, _ in t.headers] == [
        b"Date",
        b"From",
        b"Subject",
        b"To",
        b"Message-Id",
        b"MIME-Version",
        b"Content-Type",
    ]
    assert t.get("subject") == b"afternoon meeting"


def test_multipart_alternative_with_attachment(corpus):
    raw = corpus("alternative_attach.eml")
    t = parse_message(raw)
    assert t.mime_type == "multipart/mixed" and t.params["boundary"] == "outer"
    alt, pdf = t.children
    assert alt.mime_type == "multipart/alternative"
    plain, html = alt.children
    assert body(raw, plain) == b"Caf=C3=A9 report attached."
    assert plain.cte == "quoted-printable" and plain.charset == "utf-8"
    assert body(raw, html) == "<p>Café report attached.</p>".encode()
    assert pdf.mime_type == "application/pdf"
    assert pdf.disposition == "attachment" and pdf.filename == "report.pdf"
    assert pdf.content_id == b"<pdf1@example.org>"
    assert pdf.description == b"The report"
    assert pdf.language == [b"en", b"de"]
    assert pdf.location == b"http://example.org/report.pdf"
    assert pdf.md5 == b"Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert body(raw, pdf) == b"JVBERi0xLjQK"
    # preamble and epilogue are outside every child
    assert raw.index(b"This is a multi-part") < alt.header_start
    assert pdf.body_end < raw.index(b"epilogue here")


def test_nested_rfc822(corpus):
    raw = corpus("nested_rfc822.eml")
    t = parse_message(raw)
    text, msg = t.children
    assert msg.is_message and msg.embedded is msg.children[0]
    emb = msg.embedded
    assert emb.header_start == msg.body_start
    assert emb.get(b"Subject") == b"the original"
    assert emb.mime_type == "multipart/alternative"
    assert [c.mime_type for c in emb.children] == ["text/plain", "text/html"]
    assert body(raw, emb.children[0]) == b"original text"
    # the close delimiter's line break stays in the message/rfc822 part (as Dovecot counts it)
    assert body(raw, msg).endswith(b"--b2--\r\n")


def test_rfc2231_params(corpus):
    raw = corpus("rfc2231.eml")
    t = parse_message(raw)
    assert t.mime_type == "application/x-stuff"
    assert t.params == {"title": "This is even more ***fun*** isn't it!"}
    assert t.params_raw == [
        (b"title*", b"us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!")
    ]
    assert t.disposition_params == {"filename": "naïve file.txt"}
    assert t.disposition_params_raw == [(b"filename*", b"UTF-8''na%C3%AFve%20file.txt")]


def test_missing_mime_version(corpus):
    t = parse_message(corpus("no_mime_version.eml"))
    assert t.mime_type == "text/html"  # a Content-Type alone makes it MIME (as Dovecot)
    t = parse_message(corpus("no_mime_cte_only.eml"))
    assert t.mime_type == "text/plain" and t.cte == "7bit" and not t.is_mime
    assert t.params == {"charset": "us-ascii"}


def test_broken_boundary_prefix_and_missing_close(corpus):
    raw = corpus("broken_boundary.eml")
    t = parse_message(raw)
    # RFC 2046 §5.1.1: a line that starts with "--zzz" is a delimiter; no close delimiter
    assert len(t.children) == 3
    assert body(raw, t.children[0]) == b"first"
    assert t.children[1].body_start == t.children[1].body_end
    assert body(raw, t.children[2]) == b"second, no close delimiter\r\n"


def test_bare_lf(corpus):
    raw = corpus("bare_lf.eml")
    t = parse_message(raw)
    (p,) = t.children
    assert p.mime_type == "text/plain"
    assert body(raw, p) == b"one\ntwo"
    assert raw[p.header_start : p.header_end] == b"Content-Type: text/plain\n\n"


def test_empty_and_header_only(corpus):
    raw = corpus("empty_body.eml")
    t = parse_message(raw)
    assert t.body_start == t.body_end == len(raw)
    raw = corpus("header_only.eml")
    t = parse_message(raw)
    assert t.header_end == t.body_start == t.body_end == len(raw)
    assert t.get("subject") == b"no body no blank line"
    t = parse_message(b"")
    assert (t.header_start, t.header_end, t.body_end) == (0, 0, 0)


def test_deep_nesting_is_bounded(corpus):
    raw = corpus("deep_nesting.eml")
    t = parse_message(raw)
    parts = iter_parts(t)
    assert max(p.depth for p in parts) == MAX_DEPTH
    deepest = [p for p in parts if p.depth == MAX_DEPTH]
    assert len(deepest) == 1 and deepest[0].opaque
    assert deepest[0].mime_type == "application/octet-stream"
    assert b"bottom" in raw[deepest[0].body_start : deepest[0].body_end]


def test_part_limit(monkeypatch):
    import mailhouse.message.parse as parse_mod

    monkeypatch.setattr(parse_mod, "MAX_PARTS", 3)
    raw = (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
        + b"".join(b"--x\r\n\r\npart%d\r\n" % i for i in range(5))
        + b"--x--\r\n"
    )
    t = parse_mod.parse_message(raw)
    assert len(t.children) == 2
    assert raw[t.children[1].body_start : t.children[1].body_end].endswith(b"part4")


def test_multipart_digest_default():
    raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: x\r\n\r\nhi\r\n--d--\r\n"
    t = parse_message(raw)
    (m,) = t.children
    assert m.mime_type == "message/rfc822" and m.embedded.get("subject") == b"x"


def test_8bit_headers(corpus):
    t = parse_message(corpus("8bit_headers.eml"))
    assert t.get("subject") == "Grüße aus Köln".encode()


def _check_ranges(raw, t):
    for p in iter_parts(t):
        assert 0 <= p.header_start <= p.header_end == p.body_start <= p.body_end <= len(raw)
        for c in p.children:
            assert p.body_start <= c.header_start and c.body_end <= p.body_end


def test_corpus_ranges():
    for f in CORPUS.glob("*.eml"):
        raw = f.read_bytes()
        _check_ranges(raw, parse_message(raw))


_pieces = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"\r\n\r\n",
        b"X: y\r\n",
        b" folded\r\n",
        b"=?utf-8?q?x?=",
        b"Content-Type: text/plain; a*0*=utf-8''%C3; a*1=x\r\n",
        b"(",
        b'"',
        b"\x00\xff",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.lists(st.one_of(_pieces, st.binary(max_size=20)), max_size=60).map(b"".join),
    )
)
def test_parse_never_raises(raw):
    t = parse_message(raw)
    _check_ranges(raw, t)
    from mailhouse.message.bodystructure import bodystructure
    from mailhouse.message.envelope import envelope, imap_encode

    imap_encode(bodystructure(raw, t))
    imap_encode(envelope(t))


def test_boundary_params_scan_equals_one_regex_findall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 item 1: the windowed scan finds what one findall over the message finds."""
    import random

    from mailhouse.message import parse

    monkeypatch.setattr(parse, "_SCAN_WINDOW", 7)  # words straddle every window border
    rnd = random.Random(3)
    words = [b"boundary", b"BoUnDaRy", b"=", b" ", b'"', b"x", b";", b"\n", b"bound", b"ary"]
    for _ in range(2000):
        s = b"".join(rnd.choice(words) for _ in range(30))
        assert parse._boundary_params(s) == set(parse._BOUNDARY_PARAM_RE.findall(s)), s
