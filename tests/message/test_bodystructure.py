from mailhouse.message.bodystructure import body, bodystructure
from mailhouse.message.envelope import imap_encode
from mailhouse.message.parse import parse_message

US_ASCII = [b"charset", b"us-ascii"]


def bs(raw):
    return bodystructure(raw, parse_message(raw))


def test_simple_text(corpus):
    raw = corpus("simple.eml")
    # RFC 9051 §7.5.2: type subtype params id desc enc size lines | md5 dsp lang loc
    assert bs(raw) == [
        b"TEXT",
        b"PLAIN",
        [b"CHARSET", b"US-ASCII"],
        None,
        None,
        b"7bit",
        55,
        1,
        None,
        None,
        None,
        None,
    ]
    assert body(raw, parse_message(raw)) == [
        b"TEXT",
        b"PLAIN",
        [b"CHARSET", b"US-ASCII"],
        None,
        None,
        b"7bit",
        55,
        1,
    ]


def test_multipart_alternative_attachment(corpus):
    raw = corpus("alternative_attach.eml")
    plain = [
        b"text",
        b"plain",
        [b"charset", b"utf-8"],
        None,
        None,
        b"quoted-printable",
        26,
        0,
        None,
        None,
        None,
        None,
    ]
    html = [b"text", b"html", [b"charset", b"utf-8"], None, None, b"8bit", 29, 0, None, None, None, None]
    alt = [plain, html, b"alternative", [b"boundary", b"inner"], None, None, None]
    pdf = [
        b"application",
        b"pdf",
        [b"name", b"report.pdf"],
        b"<pdf1@example.org>",
        b"The report",
        b"base64",
        12,
        b"Q2hlY2sgSW50ZWdyaXR5IQ==",
        [b"attachment", [b"filename", b"report.pdf"]],
        [b"en", b"de"],
        b"http://example.org/report.pdf",
    ]
    assert bs(raw) == [alt, pdf, b"mixed", [b"boundary", b"outer"], None, None, None]
    wire = imap_encode(bs(raw))
    # multipart bodies are written back to back: "(...)(...) "mixed""
    assert wire.startswith(
        b'((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 26 0 NIL NIL NIL NIL)("text"'
    )
    assert b'"alternative" ("boundary" "inner") NIL NIL NIL)("application" "pdf"' in wire


def test_nested_message_rfc822(corpus):
    raw = corpus("nested_rfc822.eml")
    s = bs(raw)
    assert s[0] == [b"text", b"plain", US_ASCII, None, None, b"7bit", 13, 0, None, None, None, None]
    msg = s[1]
    assert msg[:7] == [b"message", b"rfc822", None, None, None, b"7bit", 304]
    env = msg[7]
    assert env[1] == b"the original" and env[9] == b"<orig@example.com>"
    assert env[2] == [[b"Original Sender", None, b"orig", b"example.com"]]
    assert msg[8] == [
        [b"text", b"plain", US_ASCII, None, None, b"7bit", 13, 0, None, None, None, None],
        [b"text", b"html", US_ASCII, None, None, b"7bit", 15, 0, None, None, None, None],
        b"alternative",
        [b"boundary", b"b2"],
        None,
        None,
        None,
    ]
    assert msg[9] == 16  # lines of the encapsulated message
    assert msg[10:] == [None, None, None, None]
    assert s[2:] == [b"mixed", [b"boundary", b"b1"], None, None, None]


def test_rfc2231_kept_encoded(corpus):
    s = bs(corpus("rfc2231.eml"))
    assert s == [
        b"application",
        b"x-stuff",
        [b"title*", b"us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!"],
        None,
        None,
        b"7bit",
        6,
        None,
        [b"attachment", [b"filename*", b"UTF-8''na%C3%AFve%20file.txt"]],
        None,
        None,
    ]


def test_non_mime_defaults(corpus):
    assert bs(corpus("no_mime_cte_only.eml")) == [
        b"text",
        b"plain",
        US_ASCII,
        None,
        None,
        b"7bit",
        10,
        1,
        None,
        None,
        None,
        None,
    ]
    assert bs(corpus("empty_body.eml")) == [
        b"text",
        b"plain",
        US_ASCII,
        None,
        None,
        b"7bit",
        0,
        0,
        None,
        None,
        None,
        None,
    ]


def test_broken_boundary(corpus):
    s = bs(corpus("broken_boundary.eml"))
    assert [x[6] for x in s[:3]] == [5, 0, 28]
    assert s[3] == b"mixed"


def test_deep_nesting_encodes(corpus):
    raw = corpus("deep_nesting.eml")
    wire = imap_encode(bs(raw))
    assert wire.count(b'"mixed"') == 100
    assert b'("application" "octet-stream" NIL NIL NIL "7bit" ' in wire
