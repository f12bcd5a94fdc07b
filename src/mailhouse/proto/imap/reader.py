"""The IMAP lexer: a cursor (:class:`Reader`) over one framed command, and its tokens.

RFCs: RFC 9051 §9 (formal syntax: atom, astring, quoted, literal, number, number64,
sequence-set, flag, date, date-time, mailbox, list-mailbox), RFC 3516 §4.3 (literal8),
RFC 3501 §5.1.3 (modified UTF-7 mailbox names), RFC 6855 §3 (UTF-8 under UTF8=ACCEPT),
RFC 9051 §5.1 (INBOX is case-insensitive).

The receiver (``receiver.py``) frames a command into segments — ``[line, literal, line, ...,
line]`` — and the grammar (``grammar*.py``, ``search.py``) reads them through a :class:`Reader`.

Invariants:

* Stdlib only; imports of ours are limited to ``errors``, ``mutf7`` and ``sequence`` — never
  the grammar or the command types — so ``search.py`` can use the reader without an import circle.
* Every token is matched by a linear regular expression at the cursor; numbers are checked on
  their digit count before ``int()``; nothing recurses.
* Every refusal raises :class:`~mailhouse.proto.imap.errors.ParseError` (BAD); a mailbox name
  that is not modified UTF-7 raises :class:`~mailhouse.proto.imap.errors.MailboxNameError`.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import NoReturn

from mailhouse.proto.imap import mutf7
from mailhouse.proto.imap.errors import MailboxNameError, ParseError
from mailhouse.proto.imap.sequence import SequenceSet, SequenceSetError

__all__ = ["MAX_NUMBER", "MAX_NUMBER64", "TAG", "LiteralData", "Reader", "Segment"]

# RFC 9051 §9: ATOM-CHAR = any CHAR except atom-specials ("(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]")
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# ASTRING-CHAR = ATOM-CHAR / "]"
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
# list-char = ATOM-CHAR / list-wildcards / resp-specials
_LIST_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
# tag = 1*<any ASTRING-CHAR except "+">
TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
# quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR excludes CR, LF (TEXT-CHAR) and NUL (CHAR);
# rev2 allows UTF-8 octets. One octet or escape per repetition keeps matching linear.
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
_NUMBER = re.compile(rb"[0-9]+")
_SEQSET = re.compile(rb"[0-9:*,$]+")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATETIME = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
MAX_NUMBER = 4294967295  # RFC 9051 §9: number is 32-bit unsigned
MAX_NUMBER64 = 9223372036854775807  # RFC 9051 §9: number64 is a signed 63-bit value >= 0
_SYSTEM_FLAGS = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}


@dataclass(frozen=True, slots=True)
class LiteralData:
    """The octets of one literal (RFC 9051 §4.3); ``binary`` for literal8 (RFC 3516 §4.3)."""

    data: bytes
    binary: bool


Segment = bytes | LiteralData
"""One piece of a framed command: a line segment (no CRLF, no literal marker) or a literal."""


class Reader:
    """Cursor over one command: line segments alternating with literals.

    ``segs`` is ``[line, literal, line, literal, ..., line]``; a literal marker has been
    cut off the end of the line before it, so "at the end of a line segment that is followed by
    a literal" is where a literal token stands."""

    def __init__(self, segs: list[Segment], utf8: bool) -> None:
        self._segs = segs
        self._i = 0
        first = segs[0]
        self._cur = first if isinstance(first, bytes) else b""
        self._pos = 0
        self.utf8 = utf8

    # -- primitives
    def error(self, message: str, code: str | None = None) -> NoReturn:
        raise ParseError(message, code)

    def peek(self, ahead: int = 0) -> int:
        """The octet ``ahead`` octets past the cursor in this line segment, or -1."""
        i = self._pos + ahead
        return self._cur[i] if i < len(self._cur) else -1

    def at_literal(self) -> bool:
        return self._pos == len(self._cur) and self._i + 1 < len(self._segs)

    def eol(self) -> bool:
        return self._pos == len(self._cur) and self._i + 1 >= len(self._segs)

    def try_take(self, token: bytes) -> bool:
        if self._cur.startswith(token, self._pos):
            self._pos += len(token)
            return True
        return False

    def try_take_ci(self, word: bytes) -> bool:
        """Take ``word`` case-insensitively if followed by a delimiter."""
        end = self._pos + len(word)
        if self._cur[self._pos : end].upper() == word and (
            end == len(self._cur) or self._cur[end] in b" ()[]"
        ):
            self._pos = end
            return True
        return False

    def expect(self, token: bytes) -> None:
        if not self.try_take(token):
            self.error(f"Expected {token.decode()!r}")

    def sp(self) -> None:
        if not self.try_take(b" "):
            self.error("Expected SP")

    def match(self, rx: re.Pattern[bytes]) -> bytes | None:
        """Take the match of ``rx`` at the cursor (within this line segment), or None."""
        m = rx.match(self._cur, self._pos)
        if m is None:
            return None
        self._pos = m.end()
        return m.group(0)

    # -- tokens
    def tag(self) -> str:
        """tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9)."""
        tok = self.match(TAG)
        if tok is None:
            self.error("Invalid tag")
        return tok.decode("ascii")

    def atom(self) -> str:
        tok = self.match(_ATOM)
        if tok is None:
            self.error("Expected atom")
        return tok.decode("ascii")

    def literal(self, allow_binary: bool = False) -> LiteralData:
        if not self.at_literal():
            self.error("Expected literal")
        lit = self._segs[self._i + 1]
        nxt = self._segs[self._i + 2]
        assert isinstance(lit, LiteralData) and isinstance(nxt, bytes)
        self._i += 2
        self._cur, self._pos = nxt, 0
        if lit.binary and not allow_binary:
            self.error("literal8 not allowed here")  # RFC 3516 §4.3: only APPEND data
        if not lit.binary and b"\x00" in lit.data:
            self.error("NUL in literal")  # RFC 9051 §9: literal is *CHAR8 (no NUL)
        return lit

    def quoted(self) -> bytes:
        m = _QUOTED.match(self._cur, self._pos)
        if m is None:
            # RFC 9051 §9: QUOTED-CHAR excludes NUL, CR, LF; escapes only for " and \.
            self.error("Invalid quoted string")
        self._pos = m.end()
        return _UNESCAPE.sub(rb"\1", m.group(1))

    def string(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        return self.literal().data

    def astring(self) -> bytes:
        if self.peek() == 0x22 or self.at_literal():
            return self.string()
        tok = self.match(_ASTRING_ATOM)
        if tok is None:
            self.error("Expected astring")
        return tok

    def astring_str(self) -> str:
        raw = self.astring()
        try:
            return raw.decode("utf-8") if self.utf8 else raw.decode("ascii")
        except UnicodeDecodeError:
            self.error("8-bit characters not allowed here")

    def nstring(self) -> bytes | None:
        if self.try_take_ci(b"NIL"):
            return None
        return self.string()

    def _digits(self, limit: int) -> int:
        tok = self.match(_NUMBER)
        if tok is None:
            self.error("Expected number")
        if len(tok) > 19 or int(tok) > limit:  # length check first: no huge int() on a long run
            self.error("Number out of range")
        return int(tok)

    def number(self) -> int:
        return self._digits(MAX_NUMBER)

    def nz_number(self) -> int:
        n = self._digits(MAX_NUMBER)
        if n == 0:
            self.error("Number must be non-zero")
        return n

    def number64(self) -> int:
        return self._digits(MAX_NUMBER64)

    def seqset(self) -> SequenceSet:
        tok = self.match(_SEQSET)
        if tok is None:
            self.error("Expected sequence set")
        try:
            return SequenceSet.parse(tok)
        except SequenceSetError as exc:
            self.error(f"Invalid sequence set: {exc}")

    def flag(self) -> str:
        """flag = "\\Answered" / ... / flag-keyword / flag-extension (RFC 9051 §9)."""
        if self.try_take(b"\\"):
            name = "\\" + self.atom()
            return _SYSTEM_FLAGS.get(name.upper(), name)
        return self.atom()

    def flag_keyword(self) -> str:
        return self.atom()

    def flag_list(self) -> tuple[str, ...]:
        """flag-list = "(" [flag *(SP flag)] ")"."""
        self.expect(b"(")
        flags: list[str] = []
        if not self.try_take(b")"):
            flags.append(self.flag())
            while not self.try_take(b")"):
                self.sp()
                flags.append(self.flag())
        return tuple(flags)

    def paren_atoms(self, upper: bool = True) -> tuple[str, ...]:
        """ "(" [atom *(SP atom)] ")"."""
        self.expect(b"(")
        out: list[str] = []
        while not self.try_take(b")"):
            if out:
                self.sp()
            a = self.atom()
            out.append(a.upper() if upper else a)
        return tuple(out)

    def decode_mailbox(self, raw: bytes) -> str:
        """A mailbox name as sent (astring or list-mailbox octets), decoded."""
        if raw.upper() == b"INBOX":  # RFC 9051 §5.1: INBOX is case-insensitive
            return "INBOX"
        if self.utf8:
            try:
                return raw.decode("utf-8")  # RFC 6855 §3: UTF-8 mailbox names
            except UnicodeDecodeError:
                self.error("Mailbox name is not valid UTF-8")
        try:
            return mutf7.decode(raw)  # RFC 3501 §5.1.3
        except mutf7.MUTF7Error as exc:
            raise MailboxNameError(f"Invalid modified UTF-7 mailbox name: {exc}") from exc

    def mailbox(self) -> str:
        return self.decode_mailbox(self.astring())

    def list_mailbox(self) -> str:
        """list-mailbox = 1*list-char / string (RFC 9051 §9)."""
        if self.peek() == 0x22 or self.at_literal():
            raw = self.string()
        else:
            tok = self.match(_LIST_CHARS)
            if tok is None:
                self.error("Expected mailbox pattern")
            raw = tok
        if raw.upper() == b"INBOX":
            return "INBOX"
        if not raw or self.utf8:
            return self.decode_mailbox(raw) if raw else ""
        try:  # a pattern is not a name: "&" that forms no shift stands for itself
            return mutf7.decode_pattern(raw)  # RFC 3501 §5.1.3
        except mutf7.MUTF7Error as exc:
            raise MailboxNameError(f"Invalid mailbox pattern: {exc}") from exc

    def date(self) -> datetime.date:
        """date = date-text / DQUOTE date-text DQUOTE (RFC 9051 §9)."""
        q = self.try_take(b'"')
        m = _DATE.match(self._cur, self._pos)
        if m is None:
            self.error("Invalid date")
        self._pos = m.end()
        if q:
            self.expect(b'"')
        month = _MONTHS.get(m.group(2).decode("ascii").upper())
        try:
            if month is None:
                raise ValueError
            return datetime.date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            self.error("Invalid date")

    def date_time(self) -> datetime.datetime:
        """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE."""
        m = _DATETIME.match(self._cur, self._pos)
        if m is None:
            self.error("Invalid date-time")
        self._pos = m.end()
        g = [x.decode("ascii") for x in m.groups()]
        month = _MONTHS.get(g[1].upper())
        try:
            if month is None:
                raise ValueError
            offset = datetime.timedelta(hours=int(g[7]), minutes=int(g[8]))
            tz = datetime.timezone(-offset if g[6] == "-" else offset)
            return datetime.datetime(
                int(g[2]), month, int(g[0].strip()), int(g[3]), int(g[4]), int(g[5]), tzinfo=tz
            )
        except ValueError:
            self.error("Invalid date-time")

    def end(self) -> None:
        if not self.eol():
            self.error("Unexpected characters at end of command")
