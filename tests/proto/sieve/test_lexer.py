"""Sieve lexer (RFC 5228 §2): byte-level tokens and error positions."""

from __future__ import annotations

import pytest

from mailhouse.proto.sieve.errors import SieveSyntaxError
from mailhouse.proto.sieve.lexer import Kind, tokenize


def kinds(text: str) -> list[tuple[Kind, str | int]]:
    return [(t.kind, t.value) for t in tokenize(text)][:-1]


def test_numbers_with_quantifiers() -> None:
    assert kinds("1 2K 3M 1G") == [
        (Kind.NUMBER, 1),
        (Kind.NUMBER, 2048),
        (Kind.NUMBER, 3 << 20),
        (Kind.NUMBER, 1 << 30),
    ]


def test_number_too_large() -> None:
    with pytest.raises(SieveSyntaxError) as e:
        tokenize("size :over 5G;")
    assert (e.value.line, e.value.column) == (1, 12)


def test_quoted_string_escapes() -> None:
    assert kinds(r'"a\"b\\c\d"') == [(Kind.STRING, 'a"b\\cd')]


def test_multiline_dot_stuffing_and_comment() -> None:
    toks = tokenize("vacation text: # c\r\nline 1\r\n..dot\r\n.\r\n;")
    assert toks[1].value == "line 1\r\n.dot\r\n"
    assert toks[1].multiline and toks[2].value == ";" and toks[2].line == 5


def test_comments_and_positions() -> None:
    toks = tokenize("# x\n/* a\nb */ keep;")
    assert (toks[0].value, toks[0].line, toks[0].column) == ("keep", 3, 6)


def test_tags_are_lowercased_identifiers_too() -> None:
    assert kinds("Header :Contains") == [(Kind.IDENT, "header"), (Kind.TAG, "contains")]


@pytest.mark.parametrize(
    ("text", "pos"),
    [
        ('keep;\n  "open', (2, 3)),
        ("keep;\n/* open", (2, 1)),
        ("keep; @", (1, 7)),
        ("x : y", (1, 3)),
        ("vacation text: x\n", (1, 16)),
        ("vacation text:\nno end\n", (1, 10)),
    ],
)
def test_error_positions(text: str, pos: tuple[int, int]) -> None:
    with pytest.raises(SieveSyntaxError) as e:
        tokenize(text)
    assert (e.value.line, e.value.column) == pos
