"""Sieve lexer (RFC 5228 §2 and §8.1): tokens with 1-based line and column.

Tokens: identifiers, tags (``:name``), numbers with K/M/G quantifiers (§2.4.1), quoted strings with
``\\`` escapes (§2.4.2), multi-line ``text:`` strings with dot-stuffing (§2.4.2), punctuation, and
comments (``#`` to end of line, ``/* */`` bracketed, §2.3). LF alone is accepted as CRLF.

Invariants: never recurses; every error is a :class:`SieveSyntaxError` with the position of the
offending character; string values are ``str`` (the script is UTF-8, §2.4.2 "strings are UTF-8").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailhouse.proto.sieve.errors import SieveSyntaxError

__all__ = ["Kind", "Token", "tokenize"]


class Kind(enum.Enum):
    IDENT = "identifier"
    TAG = "tag"
    NUMBER = "number"
    STRING = "string"
    PUNCT = "punctuation"
    EOF = "end of script"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    value: str | int
    line: int
    column: int
    multiline: bool = False  # a text: string (no encoded-character/variable difference, kept for tools)


_QUANT = {"K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20, "G": 1 << 30, "g": 1 << 30}
_PUNCT = frozenset(";,()[]{}")
# §8.1: number values are 32-bit unsigned at most (Pigeonhole and RFC 5228 §2.4.1 "2^32 - 1")
_MAX_NUMBER = (1 << 32) - 1


def _ident_start(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _ident_char(c: str) -> bool:
    return _ident_start(c) or ("0" <= c <= "9")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens ending with one EOF token."""
    out: list[Token] = []
    i, n = 0, len(text)
    line, col0 = 1, 0  # col0: index of the first character of the current line

    def pos(j: int) -> tuple[int, int]:
        return line, j - col0 + 1

    while i < n:
        c = text[i]
        if c == "\n":
            i += 1
            line, col0 = line + 1, i
            continue
        if c in " \t\r":
            i += 1
            continue
        if c == "#":  # §2.3 hash-comment
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "/" and text.startswith("/*", i):  # §2.3 bracket-comment
            j = text.find("*/", i + 2)
            if j < 0:
                raise SieveSyntaxError(*pos(i), "unterminated comment")
            for k in range(i, j):
                if text[k] == "\n":
                    line, col0 = line + 1, k + 1
            i = j + 2
            continue
        if c in _PUNCT:
            out.append(Token(Kind.PUNCT, c, *pos(i)))
            i += 1
            continue
        if c == ":":
            j = i + 1
            if j >= n or not _ident_start(text[j]):
                raise SieveSyntaxError(*pos(i), "':' must start a tag (:name)")
            while j < n and _ident_char(text[j]):
                j += 1
            out.append(Token(Kind.TAG, text[i + 1 : j].lower(), *pos(i)))
            i = j
            continue
        if "0" <= c <= "9":  # §2.4.1 number [K|M|G]
            j = i
            while j < n and "0" <= text[j] <= "9":
                j += 1
            value = int(text[i:j])
            if j < n and text[j] in _QUANT:
                value *= _QUANT[text[j]]
                j += 1
            if value > _MAX_NUMBER:
                raise SieveSyntaxError(*pos(i), "number is too large (more than 2^32 - 1)")
            if j < n and _ident_char(text[j]):
                raise SieveSyntaxError(*pos(j), "unexpected character after number")
            out.append(Token(Kind.NUMBER, value, *pos(i)))
            i = j
            continue
        if c == '"':  # §2.4.2 quoted-string: "\" followed by any character is that character
            start = pos(i)
            buf: list[str] = []
            j = i + 1
            while True:
                if j >= n:
                    raise SieveSyntaxError(*start, "unterminated string")
                ch = text[j]
                if ch == '"':
                    break
                if ch == "\\" and j + 1 < n:
                    j += 1
                    ch = text[j]
                if ch == "\n":
                    line, col0 = line + 1, j + 1
                buf.append(ch)
                j += 1
            out.append(Token(Kind.STRING, "".join(buf), *start))
            i = j + 1
            continue
        if _ident_start(c):
            j = i
            while j < n and _ident_char(text[j]):
                j += 1
            word = text[i:j]
            if word.lower() == "text" and j < n and text[j] == ":":  # §2.4.2 multi-line
                start = pos(i)
                k = j + 1
                while k < n and text[k] in " \t":
                    k += 1
                if k < n and text[k] == "#":
                    e = text.find("\n", k)
                    k = n if e < 0 else e
                if k < n and text[k] == "\r":
                    k += 1
                if k >= n or text[k] != "\n":
                    raise SieveSyntaxError(*pos(k), "text: must be followed by end of line")
                k += 1
                line, col0 = line + 1, k
                lines: list[str] = []
                while True:
                    if k >= n:
                        raise SieveSyntaxError(*start, "unterminated text: string (no '.' line)")
                    e = text.find("\n", k)
                    raw = text[k:] if e < 0 else text[k:e]
                    if raw.endswith("\r"):
                        raw = raw[:-1]
                    k = n if e < 0 else e + 1
                    if raw == ".":
                        line, col0 = line + 1, k
                        break
                    if raw.startswith(".."):  # dot-stuffing
                        raw = raw[1:]
                    lines.append(raw + "\r\n")
                    line, col0 = line + 1, k
                out.append(Token(Kind.STRING, "".join(lines), *start, multiline=True))
                i = k
                continue
            out.append(Token(Kind.IDENT, word.lower(), *pos(i)))
            i = j
            continue
        raise SieveSyntaxError(*pos(i), f"unexpected character {c!r}")
    out.append(Token(Kind.EOF, "", *pos(i)))
    return out
