import pytest

from mailhouse.message.parse import parse_message
from mailhouse.message.sections import (
    SectionNotFound,
    SectionSpec,
    UnknownCTE,
    binary_section,
    binary_size,
    fetch_section,
    parse_section_spec,
)


@pytest.fixture
def nested(corpus):
    raw = corpus("nested_rfc822.eml")
    return raw, parse_message(raw)


def test_whole_header_text(nested):
    raw, t = nested
    assert fetch_section(raw, t, "") == raw
    hdr = fetch_section(raw, t, "HEADER")
    assert hdr.startswith(b"From: list@example.com\r\n") and hdr.endswith(b'boundary="b1"\r\n\r\n')
    assert hdr + fetch_section(raw, t, "TEXT") == raw


def test_parts_and_mime(nested):
    raw, t = nested
    assert fetch_section(raw, t, "1") == b"See attached."
    assert fetch_section(raw, t, "1.MIME") == b"Content-Type: text/plain\r\n\r\n"
    assert fetch_section(raw, t, "2.MIME") == b"Content-Type: message/rfc822\r\n\r\n"
    # HEADER/TEXT of a message/rfc822 part are those of the embedded message (RFC 9051 §6.4.5)
    assert fetch_section(raw, t, "2.HEADER").startswith(b'From: "Original Sender"')
    assert fetch_section(raw, t, "2.HEADER").endswith(b'boundary="b2"\r\n\r\n')
    assert fetch_section(raw, t, "2.TEXT").startswith(b"--b2\r\n")
    # numbers after a message/rfc822 part address the embedded message's parts
    assert fetch_section(raw, t, "2.1") == b"original text"
    assert fetch_section(raw, t, "2.2") == b"<b>original</b>"
    assert fetch_section(raw, t, "2.2.MIME") == b"Content-Type: text/html\r\n\r\n"


def test_header_fields(nested):
    raw, t = nested
    assert (
        fetch_section(raw, t, "HEADER.FIELDS (subject TO)")
        == b"To: reader@example.com\r\nSubject: Fwd: digest\r\n\r\n"
    )
    assert fetch_section(raw, t, "HEADER.FIELDS (X-None)") == b"\r\n"
    notf = fetch_section(raw, t, "HEADER.FIELDS.NOT (From To Subject MIME-Version)")
    assert notf == b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    assert fetch_section(raw, t, "2.HEADER.FIELDS (Message-ID)") == b"Message-ID: <orig@example.com>\r\n\r\n"


def test_folded_header_field_kept_whole(corpus):
    raw = corpus("encoded_words.eml")
    t = parse_message(raw)
    assert fetch_section(raw, t, "HEADER.FIELDS (Subject)") == (
        b"Subject: =?UTF-8?B?SGVsbG8g?=\r\n =?UTF-8?B?V8O2cmxk?= and =?iso-8859-1?q?caf=E9?=\r\n\r\n"
    )


def test_single_part_numbering(corpus):
    raw = corpus("simple.eml")
    t = parse_message(raw)
    # part 1 of a non-multipart message is its body
    assert fetch_section(raw, t, "1") == fetch_section(raw, t, "TEXT")
    assert fetch_section(raw, t, "1.MIME") == fetch_section(raw, t, "HEADER")


def test_missing_sections(nested):
    raw, t = nested
    assert fetch_section(raw, t, "3") == b""  # Dovecot answers an empty string
    assert fetch_section(raw, t, "1.HEADER") == b""
    with pytest.raises(SectionNotFound):
        fetch_section(raw, t, "9.1", missing_ok=False)


def test_partial(nested):
    raw, t = nested
    assert fetch_section(raw, t, "", (0, 4)) == b"From"
    assert fetch_section(raw, t, "1", (4, 100)) == b"attached."
    assert fetch_section(raw, t, "1", (1000, 5)) == b""


def test_spec_parsing():
    assert parse_section_spec("1.2.HEADER.FIELDS (a b)") == SectionSpec((1, 2), "HEADER.FIELDS", (b"a", b"b"))
    assert parse_section_spec(b'header.fields.not ("x")') == SectionSpec((), "HEADER.FIELDS.NOT", (b"x",))
    assert parse_section_spec("3") == SectionSpec((3,), "")
    for bad in ("MIME", "0", "HEADER.FIELDS", "1.FOO", "TEXT (a)"):
        with pytest.raises(ValueError):
            parse_section_spec(bad)


def test_binary(corpus):
    raw = corpus("alternative_attach.eml")
    t = parse_message(raw)
    assert binary_section(raw, t, (1, 1)) == "Café report attached.".encode()
    assert binary_section(raw, t, (2,)) == b"%PDF-1.4\n"
    assert binary_size(raw, t, (2,)) == 9
    assert binary_section(raw, t, (1, 2)) == "<p>Café report attached.</p>".encode()
    assert binary_section(raw, t, (2,), (1, 3)) == b"PDF"
    assert binary_section(raw, t) == raw


def test_binary_unknown_cte():
    raw = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
    t = parse_message(raw)
    with pytest.raises(UnknownCTE):
        binary_section(raw, t, (1,))


# ---------------------------------------------------------------- issue 12 item 2: streaming decode
def _feed_all(cte: str, data: bytes, size: int) -> bytes:
    from mailhouse.message.sections import TransferDecoder

    d = TransferDecoder(cte)
    return b"".join(d.feed(data[i : i + size]) for i in range(0, len(data), size)) + d.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 76, 4096])
def test_transfer_decoder_matches_one_shot_decoding(size: int) -> None:
    import base64
    import quopri
    import random

    from mailhouse.message.sections import decode_transfer_encoding

    raw = random.Random(size).randbytes(3000)
    cases = [
        ("base64", base64.encodebytes(raw).replace(b"\n", b"\r\n")),
        ("base64", base64.encodebytes(raw)[:-7] + b"!! junk\r\n"),
        ("base64", b"QUJD\r\nREVG=ignored after padding"),
        ("base64", b"QUJDR"),  # a lone trailing sextet is dropped
        ("quoted-printable", quopri.encodestring(raw).replace(b"\n", b"\r\n")),
        ("quoted-printable", b"soft=\r\nbreak =41=\r\n=42 end="),
        ("7bit", raw),
    ]
    for cte, enc in cases:
        assert _feed_all(cte, enc, size) == decode_transfer_encoding(enc, cte), (cte, enc[:40])


def test_transfer_decoder_long_qp_line_is_decoded_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailhouse.message.sections as sections

    monkeypatch.setattr(sections, "_QP_MAX_CARRY", 8)
    for enc in (b"abc=41def=\r\nghi" * 50 + b"=4", b"abc=41def=4" * 50 + b"=", b"x=\r" * 40):
        for size in (1, 3, 7, 50):
            want = sections.decode_transfer_encoding(enc, "quoted-printable")
            assert _feed_all("quoted-printable", enc, size) == want, (enc[:20], size)


def test_transfer_decoder_refuses_unknown_encodings() -> None:
    from mailhouse.message.sections import TransferDecoder, UnknownCTE

    with pytest.raises(UnknownCTE):
        TransferDecoder("x-uuencode")


# ---------------------------------------------------------------- issue 13 §1: RFC 2045 §6.7 decoding
@pytest.mark.parametrize(
    ("enc", "dec"),
    [
        (b"padded   \r\nnext\r\n", b"padded\r\nnext\r\n"),  # rule 3: trailing white space deleted
        (b"soft=\r\nbreak\r\n", b"softbreak\r\n"),  # rule 5
        (b"soft= \t\r\nbreak\r\n", b"softbreak\r\n"),  # "=" then padding: still a soft break
        (b"tab\t=\r\nx\r\n", b"tab\tx\r\n"),  # white space before the "=" is data
        (b"=41=4a=4B\r\n", b"AJK\r\n"),  # rule 1, hex digits in either case
        (b"=ZZ =4\r\n", b"=ZZ =4\r\n"),  # note (2): an "=" that starts no escape is kept
        (b"last  ", b"last"),  # the last line too
        (b"end=", b"end"),
        (b"lf only  \nx=\ny\n", b"lf only\nxy\n"),
        (b"", b""),
    ],
)
def test_quoted_printable_rules(enc: bytes, dec: bytes) -> None:
    from mailhouse.message.sections import decode_transfer_encoding

    assert decode_transfer_encoding(enc, "quoted-printable") == dec
    for size in (1, 2, 3, 7):
        assert _feed_all("quoted-printable", enc, size) == dec


def test_binary_size_of_quoted_printable_is_the_decoded_size() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"hello  \r\nbar=\r\n\r\nfoo\t \t= \r\n=62\r\n"
    )
    t = parse_message(raw)
    assert binary_section(raw, t, (1,)) == b"hello\r\nbar\r\nfoo\t \tb\r\n"
    assert binary_size(raw, t, (1,)) == len(b"hello\r\nbar\r\nfoo\t \tb\r\n")
    assert binary_section(raw, t, (1,), (5, 7)) == b"\r\nbar\r\n"  # a range of the decoded octets


def test_transfer_decoder_qp_chunks_fuzzed() -> None:
    import re

    from hypothesis import assume, given, settings
    from hypothesis import strategies as st

    import mailhouse.message.sections as sections

    piece = st.sampled_from([b"a", b" ", b"\t", b"=", b"=4", b"1", b"\r\n", b"\n", b"=\r\n", b"= \r\n", b"z"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(piece, max_size=60).map(b"".join), st.integers(1, 9))
    def check(enc: bytes, size: int) -> None:
        # Bounded memory by design: a run of only blanks and "=" longer than the carry is decoded
        # as it stands (its fate under rule 3 is unknown until the line ends); with the carry cut
        # to 6 below, such runs are excluded here and pinned by the test after this one.
        assume(re.search(rb"[ \t=]{7,}", enc) is None)
        assert _feed_all("quoted-printable", enc, size) == sections.qp_decode(enc)

    old = sections._QP_MAX_CARRY
    sections._QP_MAX_CARRY = 6  # the over-long-line path too
    try:
        check()
    finally:
        sections._QP_MAX_CARRY = old


def test_transfer_decoder_qp_overlong_blank_run_is_bounded() -> None:
    """A quoted-printable "line" of nothing but blanks longer than the carry is passed on as it
    stands rather than held whole (memory stays bounded; RFC 2045 lines are at most 76)."""
    import mailhouse.message.sections as sections

    old = sections._QP_MAX_CARRY
    sections._QP_MAX_CARRY = 6
    try:
        dec = sections.TransferDecoder("quoted-printable")
        out = dec.feed(b" " * 40)
        assert len(dec._carry) <= 6 + 2 and out.strip(b" ") == b""
        assert out + dec.feed(b"x\r\n") + dec.finish() == b" " * 40 + b"x\r\n"
    finally:
        sections._QP_MAX_CARRY = old


def test_base64_binary_parts_keeps_the_octets() -> None:
    import base64

    from mailhouse.message.sections import base64_binary_parts

    data = b"\0-\xe4\n\r\n\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=xx\r\nMIME-Version: 1.0\r\n\r\n"
        b"--xx\r\nContent-Transfer-Encoding: BINARY\r\n\r\n" + data + b"\r\n"
        b"--xx\r\nContent-Type: text/plain\r\n\r\nhi\r\n--xx--\r\n"
    )
    out = base64_binary_parts(raw)
    assert out is not None and b"\0" not in out
    t = parse_message(out)
    assert binary_section(out, t, (1,)) == data
    assert fetch_section(out, t, "2") == b"hi"
    assert base64.b64decode(fetch_section(out, t, "1")) == data
    assert base64_binary_parts(b"Subject: plain\r\n\r\ntext\r\n") is None
