"""Issue 12 item 4: body search in bounded windows (message/search.py).

Matches across window borders, across quoted-printable soft line breaks and escapes split by a
border, inside base64 whose quanta straddle a border, in non-UTF-8 (and multi-byte) charsets,
case-insensitively (Unicode case folding, which may change a string's length), and the caps on
parts, depth, decoded octets and time."""

from __future__ import annotations

import base64
import binascii
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.message.parse import parse_message
from mailhouse.message.search import (
    WINDOW,
    SearchIndex,
    SearchLimits,
    SearchTimeout,
    body_matches,
    iter_text_windows,
    part_text,
    scan_bodies,
    text_matches,
)


def _msg(
    body: bytes, *, cte: str = "8bit", charset: str | None = "utf-8", ctype: str = "text/plain"
) -> bytes:
    cs = f"; charset={charset}" if charset else ""
    return (
        b"From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        + f"Content-Type: {ctype}{cs}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + body
    )


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data).replace(b"\n", b"\r\n")


@pytest.mark.parametrize("shift", range(-8, 9))
def test_match_across_window_border_plain(shift: int) -> None:
    needle = "Needle-ACROSS"
    pad = WINDOW - 6 + shift  # offsets count from the part's body: the needle straddles the border
    raw = _msg(b"x" * pad + needle.encode() + b" tail\r\n")
    t = parse_message(raw)
    assert body_matches(raw, t, "needle-across")
    assert body_matches(raw, t, "NEEDLE-ACROSS TAIL")
    assert not body_matches(raw, t, "needle-acrossx")


@pytest.mark.parametrize("shift", range(0, 12))
def test_match_across_qp_soft_break_at_window_border(shift: int) -> None:
    # a soft line break "=\r\n" and an escape "=C3=9F" (ß) right at the window border
    line = b"y" * 70 + b"=\r\n"
    head = line * ((WINDOW - 200) // len(line))
    body = head + b"z" * (200 - 9 + shift) + b"Stra=\r\n=C3=9Fe und mehr\r\n"
    raw = _msg(body, cte="quoted-printable")
    t = parse_message(raw)
    assert body_matches(raw, t, "STRASSE UND")  # ß case-folds to "ss"
    assert body_matches(raw, t, "straße und")
    assert not body_matches(raw, t, "stra=")


def test_qp_long_line_without_breaks() -> None:
    body = b"=41" * (WINDOW // 3 + 7) + b"=42=43" + b"q" * 100
    raw = _msg(body, cte="quoted-printable")
    t = parse_message(raw)
    assert body_matches(raw, t, "aaabc")
    assert not body_matches(raw, t, "=42")


@pytest.mark.parametrize("shift", range(0, 8))
def test_match_in_base64_across_border(shift: int) -> None:
    text = ("ä" * (WINDOW // 2 - 40 + shift) + "Zielwort hier").encode()
    raw = _msg(_b64(text), cte="base64")
    t = parse_message(raw)
    assert body_matches(raw, t, "ZIELWORT HIER")
    assert body_matches(raw, t, "ääzielwort")
    assert not body_matches(raw, t, "Zielwort hier!")


def test_base64_with_junk_and_padding_stops() -> None:
    data = b"hello searchable world"
    enc = base64.b64encode(data)
    raw = _msg(enc[:8] + b"\r\n!!\r\n" + enc[8:] + b"\r\n" + base64.b64encode(b"after padding"), cte="base64")
    t = parse_message(raw)
    assert body_matches(raw, t, "searchable world")


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("iso-8859-1", "Grüße aus Köln"),
        ("windows-1252", "Preis 10 € für Café"),
        ("koi8-r", "Привет МИР"),
        ("shift_jis", "日本語のテキスト検索"),
        ("utf-16", "Ünïcödé sixteen"),
        ("iso-2022-jp", "漢字かな交じり文"),
    ],
)
def test_non_utf8_charsets_across_borders(charset: str, text: str) -> None:
    unit = len("a".encode(charset)) if charset != "utf-16" else 2  # octets per filler character
    encoded = text.encode(charset)
    lo = (WINDOW - len(encoded)) // unit
    for pad in range(lo, WINDOW // unit + 1, max(1, len(encoded) // (5 * unit))):
        body = ("a" * pad + text).encode(charset)
        raw = _msg(body, cte="7bit" if charset == "iso-2022-jp" else "8bit", charset=charset)
        t = parse_message(raw)
        assert body_matches(raw, t, text.upper()), (charset, pad)
        assert body_matches(raw, t, text.lower()), (charset, pad)
        assert not body_matches(raw, t, text + "!"), (charset, pad)


def test_unknown_charset_falls_back_to_cp1252_when_not_utf8() -> None:
    raw = _msg("Grüße".encode("cp1252") + b" " + b"x" * WINDOW + "Café".encode("cp1252"), charset=None)
    t = parse_message(raw)
    assert body_matches(raw, t, "grüße")
    assert body_matches(raw, t, "CAFÉ")
    raw = _msg("naïve ünïcode".encode(), charset="x-unknown")
    assert body_matches(raw, parse_message(raw), "NAÏVE")


def test_casefold_expansion_across_border() -> None:
    # "ΐ" folds to three code points and "ß" to two; the needle is folded the same way
    for pad in range(WINDOW - 12, WINDOW + 4):
        body = b"." * pad + "ΐßΐ end".encode()
        raw = _msg(body)
        t = parse_message(raw)
        assert body_matches(raw, t, "ΐSSΐ END"), pad


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.integers(min_value=0, max_value=3 * WINDOW),
    word=st.text(alphabet="abcÄöüßΣς€ \r\n", min_size=1, max_size=12),
    cte=st.sampled_from(["8bit", "base64", "quoted-printable"]),
)
def test_windowed_scan_agrees_with_whole_decode(prefix: int, word: str, cte: str) -> None:
    plain = ("xy" * prefix)[:prefix].encode() + word.encode() + b" end"
    body = {"8bit": plain, "base64": _b64(plain), "quoted-printable": _qp(plain)}[cte]
    raw = _msg(body, cte=cte)
    t = parse_message(raw)
    whole = part_text(raw, t).casefold()
    needle = word.casefold()
    if "\t" not in whole and needle.strip():
        assert body_matches(raw, t, word) == (needle in whole)
    windows = list(iter_text_windows(raw, t))
    assert "".join(windows) == whole
    assert max((len(w) for w in windows), default=0) <= 4 * WINDOW


def _multipart(parts: list[bytes], boundary: str = "b") -> bytes:
    out = b""
    for p in parts:
        out += f"--{boundary}\r\n".encode() + p + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _text_part(text: str) -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()


def test_parts_cap() -> None:
    parts = [_text_part(f"part {i}") for i in range(50)] + [_text_part("LASTPART")]
    raw = _msg(_multipart(parts), ctype='multipart/mixed; boundary="b"', charset=None)
    t = parse_message(raw)
    assert body_matches(raw, t, "lastpart")
    assert not body_matches(raw, t, "lastpart", limits=SearchLimits(max_parts=50))
    assert body_matches(raw, t, "part 49", limits=SearchLimits(max_parts=50))


def test_depth_cap() -> None:
    inner = _text_part("DEEPTEXT")
    for i in range(30):
        inner = f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n'.encode() + _multipart(
            [inner], f"b{i}"
        )
    raw = b"From: a@example.org\r\nMIME-Version: 1.0\r\n" + inner
    t = parse_message(raw)
    assert not body_matches(raw, t, "deeptext")  # 30 levels > MAX_SEARCH_DEPTH
    assert body_matches(raw, t, "deeptext", limits=SearchLimits(max_depth=40))


def test_decoded_bytes_cap() -> None:
    raw = _msg(b"a" * 100_000 + b"FAR AWAY")
    t = parse_message(raw)
    assert body_matches(raw, t, "far away")
    assert not body_matches(raw, t, "far away", limits=SearchLimits(max_decoded_bytes=100_000))
    assert body_matches(raw, t, "far", limits=SearchLimits(max_decoded_bytes=100_003))


def test_deadline_raises_between_windows() -> None:
    raw = _msg(b"a" * (4 * WINDOW))
    t = parse_message(raw)
    with pytest.raises(SearchTimeout):
        body_matches(raw, t, "nothing", limits=SearchLimits(deadline=time.monotonic() - 1))
    with pytest.raises(SearchTimeout):
        text_matches(raw, t, "nothing", limits=SearchLimits(deadline=time.monotonic() - 1))


def test_scan_several_needles_in_one_pass_and_index_memo() -> None:
    raw = _msg(b"alpha " + b"-" * (2 * WINDOW) + b" omega")
    t = parse_message(raw)
    assert scan_bodies(raw, t, ["alpha", "omega", "gamma", ""]) == {"alpha", "omega"}
    idx = SearchIndex(raw, t)
    idx.scan(["alpha", "gamma"])
    assert idx.body("alpha") and not idx.body("gamma")
    # remembered: a past deadline does not matter for answered needles
    assert idx.body("alpha", SearchLimits(deadline=time.monotonic() - 1))
    with pytest.raises(SearchTimeout):
        idx.body("omega", SearchLimits(deadline=time.monotonic() - 1))
    assert idx.body("omega")
