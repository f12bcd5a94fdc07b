import datetime as dt

from mailhouse.message.parse import parse_message
from mailhouse.message.search import address_text, body_matches, header_matches, sent_date, text_matches


def test_header_match_decodes_encoded_words(corpus):
    raw = corpus("encoded_words.eml")
    t = parse_message(raw)
    assert header_matches(raw, t, "Subject", "hello wörld")
    assert header_matches(raw, t, b"subject", "CAFÉ")
    assert header_matches(raw, t, "from", "keld jørn")
    assert header_matches(raw, t, "to", "élody")
    assert not header_matches(raw, t, "cc", "")
    assert header_matches(raw, t, "subject", "")  # empty string: field present
    assert header_matches(raw, t, "from", "J\xf8rn".encode("latin-1"), charset="iso-8859-1")


def test_8bit_header_match(corpus):
    raw = corpus("8bit_headers.eml")
    t = parse_message(raw)
    assert header_matches(raw, t, "subject", "GRÜSSE".lower().replace("ss", "ß"))
    assert header_matches(raw, t, "from", "müller")


def test_body_match_decodes(corpus):
    raw = corpus("encoded_words.eml")
    t = parse_message(raw)
    assert body_matches(raw, t, "grüße aus köln")
    assert not body_matches(raw, t, "Gr=FC")
    raw = corpus("alternative_attach.eml")
    t = parse_message(raw)
    assert body_matches(raw, t, "café REPORT")
    assert not body_matches(raw, t, "JVBERi0")  # base64 attachment is not text
    assert not body_matches(raw, t, "report.pdf")  # headers are not body


def test_body_of_nested_message(corpus):
    raw = corpus("nested_rfc822.eml")
    t = parse_message(raw)
    assert body_matches(raw, t, "ORIGINAL TEXT")


def test_text_match(corpus):
    raw = corpus("alternative_attach.eml")
    t = parse_message(raw)
    assert text_matches(raw, t, "alice@example.org")
    assert text_matches(raw, t, "Café")
    assert not text_matches(raw, t, "nowhere-to-be-found")


def test_sent_date(corpus):
    t = parse_message(corpus("groups.eml"))
    assert sent_date(t) == dt.date(1969, 2, 13)  # its own zone, not UTC (which would be the 14th)
    assert sent_date(parse_message(b"Date: garbage\r\n\r\n")) is None
    assert sent_date(parse_message(b"\r\n")) is None


def test_address_text(corpus):
    t = parse_message(corpus("encoded_words.eml"))
    assert address_text(t, "From") == "Keld Jørn Simonsen <keld@example.dk>"
