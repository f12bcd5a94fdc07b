"""message/preview.py: RFC 8970 preview text (part choice, HTML stripping, bounds)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.message.parse import parse_message
from mailhouse.message.preview import PREVIEW_CHARS, PREVIEW_WINDOW, preview, preview_part


def _p(raw: bytes) -> str:
    return preview(raw, parse_message(raw))


def test_plain_collapsed_and_cut() -> None:
    raw = b"Subject: x\r\n\r\n  a\r\n\r\n\tb   c\r\n" + b"w " * 300
    got = _p(raw)
    assert got.startswith("a b c w w") and len(got) <= PREVIEW_CHARS and "  " not in got


def test_html_stripped_scripts_styles_and_entities() -> None:
    raw = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><head><title>T</title><style>x{}</style></head>"
        b"<body><script>evil()</script><p>Caf&eacute; &lt;ok&gt;</p><p>two</p></body></html>\r\n"
    )
    assert _p(raw) == "Café <ok> two"


def test_alternative_prefers_plain_and_skips_attachments() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=x.txt\r\n\r\nattached\r\n"
        b'--m\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n'
        b"--a\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--a\r\nContent-Type: text/plain\r\n\r\nplain\r\n--a--\r\n"
        b"--m--\r\n"
    )
    assert _p(raw) == "plain"


def test_nested_message_not_entered_and_no_text_is_empty() -> None:
    inner = b"Subject: inner\r\n\r\ninner text\r\n"
    raw = b"Content-Type: message/rfc822\r\n\r\n" + inner
    assert _p(raw) == ""
    assert _p(b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n") == ""


def test_base64_and_qp_and_charsets() -> None:
    raw = b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe=\r\n!\r\n"
    assert _p(raw) == "Grüße!"
    raw = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nw6l0w6k=\r\n"
    assert _p(raw) == "été"


def test_window_bounds_the_work_and_cuts_cleanly() -> None:
    # the text starts beyond the window: nothing of it is read
    raw = b"Content-Type: text/html\r\n\r\n<!--" + b"x" * PREVIEW_WINDOW + b"-->late\r\n"
    assert _p(raw) == ""
    # a multi-byte character cut by the window is dropped, not garbled
    raw = (
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + b" " * (PREVIEW_WINDOW - 1)
        + "é".encode()
        + b"\r\n"
    )
    assert _p(raw) == ""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_never_raises_and_stays_bounded(body: bytes) -> None:
    for head in (b"Content-Type: text/html\r\n\r\n", b"Content-Transfer-Encoding: base64\r\n\r\n", b"\r\n"):
        raw = head + body
        tree = parse_message(raw)
        got = preview(raw, tree)
        assert len(got) <= PREVIEW_CHARS and "\r" not in got and "\n" not in got
        preview_part(tree)


def test_quoted_lines_of_plain_text_are_left_out() -> None:
    raw = b"Subject: q\r\n\r\nHi Bob,\r\n\r\n> quoted text\r\n>> more\r\nMy answer\r\n"
    assert _p(raw) == "Hi Bob, My answer"
