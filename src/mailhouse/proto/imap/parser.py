"""Sans-IO IMAP server protocol core: framing (lines, literals, continuations) and the
command grammar.

RFCs: RFC 9051 (IMAP4rev2) §2.2 (commands, tags), §4.3 (literals), §7.5 (continuation
request), §9 (formal syntax); RFC 3501 (IMAP4rev1); RFC 7888 (LITERAL+ / LITERAL-);
RFC 3516 (BINARY, literal8); RFC 4959 (SASL-IR); RFC 6855 (UTF8=ACCEPT); and each
extension cited at its parser below.

Use (h11 style)::

    p = IMAPServerProtocol()
    p.receive_data(data)
    while (ev := p.next_event()) is not NEED_DATA: ...

Invariants:

* No I/O and no mailbox state: bytes in, events out. Framing happens lazily inside
  :meth:`IMAPServerProtocol.next_event`, so bytes received after a command that changes the
  mode (IDLE, AUTHENTICATE, STARTTLS, COMPRESS) are not interpreted before the adapter has
  called :meth:`~IMAPServerProtocol.begin_idle` / :meth:`~IMAPServerProtocol.begin_auth_continuation`
  or taken them with :meth:`~IMAPServerProtocol.take_buffered` (after STARTTLS the adapter
  MUST discard them — RFC 9051 §6.2.1 / CVE-2011-0411 plaintext injection).
* Every buffer is bounded: a command line (excluding literals) by ``max_line``, each literal
  by ``max_literal`` / ``max_append_literal`` and all literals of one command by
  ``max_command_octets``. An announced literal size is checked before a byte of it is read
  or allocated; a rejected non-synchronising literal is skipped by counting, not buffering.
* No recursion proportional to input: only search keys nest, bounded by
  :data:`~mailhouse.proto.imap.search.MAX_SEARCH_DEPTH`; every other parenthesised
  construct has a fixed grammar depth.
* Every error the core decides (syntax, limits, unknown command) becomes a
  :class:`CommandError` / :class:`LiteralTooBig` carrying the exact BAD/NO reply; the
  connection stays usable.

Non-synchronising literal over the limit (RFC 7888 §4): the core emits
:class:`LiteralTooBig` with a ``BAD [TOOBIG]`` reply, then silently skips the announced octets and
the rest of that command (following further ``{n+}`` markers), and resumes with the next
command. Skipping costs bandwidth, not memory; an adapter that does not want to read up to
4 GiB of garbage should send the reply and close the connection (RFC 7888 §4 allows both).
A synchronising literal over the limit is answered ``NO [TOOBIG]`` at once: the client has
not sent it and will not, as no continuation request was sent (RFC 9051 §7.5).

Why hand-written: no Python library parses IMAP4rev2 server-side, sans-IO, with literals,
LITERAL+, literal8 and bounded memory (imaplib and imapclient are clients).
"""

from __future__ import annotations

import collections
import datetime
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from mailhouse.proto.imap import mutf7
from mailhouse.proto.imap.commands import (
    Append,
    AppendMessage,
    Authenticate,
    CancelUpdate,
    CatenateText,
    CatenateURL,
    CommandArgs,
    Compress,
    CopyMove,
    Create,
    Enable,
    Expunge,
    Fetch,
    FetchAtt,
    GenUrlAuth,
    GetMetadata,
    GetQuota,
    Id,
    List,
    Login,
    Lsub,
    MailboxArg,
    MailboxFilter,
    MailboxFilterKind,
    MultiSearch,
    NoArgs,
    Notify,
    NotifyEvent,
    NotifyEventGroup,
    ParseError,
    QResyncParams,
    Rename,
    ResetKey,
    Search,
    SearchReturnOption,
    Section,
    Select,
    SetMetadata,
    SetQuota,
    Sort,
    SortCriterion,
    Status,
    Store,
    StoreMode,
    Thread,
    UrlFetch,
    UrlFetchItem,
)
from mailhouse.proto.imap.search import SearchKey, parse_search_program
from mailhouse.proto.imap.sequence import SequenceSet, SequenceSetError

# ------------------------------------------------------------------------- limits

# RFC 9051 §4 sets no line limit but RFC 7162 §4 asks servers to accept lines of at least
# 8192 octets; 64 KiB fits any real UID set or SEARCH while bounding memory per connection.
DEFAULT_MAX_LINE = 64 * 1024
# APPEND carries whole messages: 64 MiB is above every common provider's message size limit.
DEFAULT_MAX_APPEND_LITERAL = 64 * 1024 * 1024
# Other literals carry passwords, search strings, mailbox names, metadata: 1 MiB is ample.
DEFAULT_MAX_LITERAL = 1024 * 1024
# All literals of one command (MULTIAPPEND, CATENATE): bound the memory of one command.
DEFAULT_MAX_COMMAND_OCTETS = 128 * 1024 * 1024
# RFC 7888 §4 (LITERAL-): non-synchronising literals are limited to 4096 octets.
LITERAL_MINUS_MAX = 4096
# RFC 2971 §3.3: a client MUST NOT send more than 30 field-value pairs.
MAX_ID_PARAMS = 30
# Tail of a discarded line kept to spot a literal marker ("~{" + 19 digits + "+}" fits);
# a longer size is larger than every limit anyway (number64, RFC 9051 §9).
_MAX_MARKER = 32

CONTINUE_LITERAL = b"+ Ready for literal data\r\n"  # RFC 9051 §7.5

# ------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Command:
    """A complete, syntactically valid command. ``name`` is upper-case; UID commands are
    named ``"UID FETCH"`` etc. (their ``args.uid`` is True); EXAMINE is its own name."""

    tag: str
    name: str
    args: CommandArgs


@dataclass(frozen=True, slots=True)
class ContinuationNeeded:
    """Send ``data`` (``+ Ready for literal data``) now: a synchronising literal follows."""

    data: bytes = CONTINUE_LITERAL


@dataclass(frozen=True, slots=True)
class CommandError:
    """Send ``reply_bytes`` (a tagged or untagged BAD/NO); the command is discarded."""

    tag: str | None
    reply_bytes: bytes


@dataclass(frozen=True, slots=True)
class LiteralTooBig:
    """An announced literal exceeds a limit; send ``reply_bytes``. ``synchronizing`` False
    means the client is already sending it (see the module docstring)."""

    tag: str | None
    reply_bytes: bytes
    size: int
    synchronizing: bool


@dataclass(frozen=True, slots=True)
class AuthContinuation:
    """One SASL client response line, without CRLF (RFC 9051 §6.2.2); ``*`` means cancel."""

    line: bytes


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The client sent ``DONE`` (RFC 9051 §6.3.13); IDLE mode has ended."""


Event = Command | ContinuationNeeded | CommandError | LiteralTooBig | AuthContinuation | IdleDone


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = _NeedData.NEED_DATA
"""Returned by :meth:`IMAPServerProtocol.next_event` when more bytes are required."""

# ------------------------------------------------------------------------- lexical rules

# RFC 9051 §9: ATOM-CHAR = any CHAR except atom-specials ("(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]")
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# ASTRING-CHAR = ATOM-CHAR / "]"
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
# list-char = ATOM-CHAR / list-wildcards / resp-specials
_LIST_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
# tag = 1*<any ASTRING-CHAR except "+">
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
# quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR excludes CR, LF (TEXT-CHAR) and NUL (CHAR);
# rev2 allows UTF-8 octets. One octet or escape per repetition keeps matching linear.
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
_NUMBER = re.compile(rb"[0-9]+")
_SEQSET = re.compile(rb"[0-9:*,$]+")
# Literal marker at the end of a line: literal = "{" number64 ["+"] "}" CRLF (RFC 9051 §9,
# "+" RFC 7888 §3), literal8 = "~{" number64 "}" CRLF (RFC 3516 §4.3).
_MARKER = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATETIME = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_MAX_NUMBER = 4294967295  # RFC 9051 §9: number is 32-bit unsigned
_MAX_NUMBER64 = 9223372036854775807  # RFC 9051 §9: number64 is a signed 63-bit value >= 0
_SYSTEM_FLAGS = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}


@dataclass(frozen=True, slots=True)
class _Literal:
    data: bytes
    binary: bool


class Reader:
    """Cursor over one command: line segments alternating with literals.

    ``segs`` is ``[line, literal, line, literal, ..., line]``; a literal marker has been
    cut off the end of the line before it, so "at the end of a line segment that is followed by
    a literal" is where a literal token stands."""

    def __init__(self, segs: list[bytes | _Literal], utf8: bool) -> None:
        self._segs = segs
        self._i = 0
        first = segs[0]
        self._cur = first if isinstance(first, bytes) else b""
        self._pos = 0
        self.utf8 = utf8

    # -- primitives
    def error(self, message: str, code: str | None = None) -> NoReturn:
        raise ParseError(message, code)

    def peek(self) -> int:
        return self._cur[self._pos] if self._pos < len(self._cur) else -1

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

    def _match(self, rx: re.Pattern[bytes]) -> bytes | None:
        m = rx.match(self._cur, self._pos)
        if m is None:
            return None
        self._pos = m.end()
        return m.group(0)

    # -- tokens
    def atom(self) -> str:
        tok = self._match(_ATOM)
        if tok is None:
            self.error("Expected atom")
        return tok.decode("ascii")

    def literal(self, allow_binary: bool = False) -> _Literal:
        if not self.at_literal():
            self.error("Expected literal")
        lit = self._segs[self._i + 1]
        nxt = self._segs[self._i + 2]
        assert isinstance(lit, _Literal) and isinstance(nxt, bytes)
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
        tok = self._match(_ASTRING_ATOM)
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
        tok = self._match(_NUMBER)
        if tok is None:
            self.error("Expected number")
        if len(tok) > 19 or int(tok) > limit:  # length check first: no huge int() on a long run
            self.error("Number out of range")
        return int(tok)

    def number(self) -> int:
        return self._digits(_MAX_NUMBER)

    def nz_number(self) -> int:
        n = self._digits(_MAX_NUMBER)
        if n == 0:
            self.error("Number must be non-zero")
        return n

    def number64(self) -> int:
        return self._digits(_MAX_NUMBER64)

    def seqset(self) -> SequenceSet:
        tok = self._match(_SEQSET)
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

    def _decode_mailbox(self, raw: bytes) -> str:
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
            self.error(f"Invalid modified UTF-7 mailbox name: {exc}")

    def mailbox(self) -> str:
        return self._decode_mailbox(self.astring())

    def list_mailbox(self) -> str:
        """list-mailbox = 1*list-char / string (RFC 9051 §9)."""
        if self.peek() == 0x22 or self.at_literal():
            raw = self.string()
        else:
            tok = self._match(_LIST_CHARS)
            if tok is None:
                self.error("Expected mailbox pattern")
            raw = tok
        if raw.upper() == b"INBOX":
            return "INBOX"
        return self._decode_mailbox(raw) if raw else ""

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


# ------------------------------------------------------------------------- grammar


def _p_noargs(r: Reader, uid: bool) -> NoArgs:
    return NoArgs()


def _p_authenticate(r: Reader, uid: bool) -> Authenticate:
    r.sp()
    mech = r.atom().upper()
    ir: bytes | None = None
    if not r.eol():
        r.sp()  # RFC 4959 §3: initial-response = base64 / "="
        tok = r._match(re.compile(rb"[A-Za-z0-9+/]+=*|="))
        if tok is None:
            r.error("Invalid initial response")
        ir = tok
    return Authenticate(mech, ir)


def _p_login(r: Reader, uid: bool) -> Login:
    r.sp()
    user = r.astring()
    r.sp()
    return Login(user, r.astring())


def _p_enable(r: Reader, uid: bool) -> Enable:
    caps: list[str] = []
    while not r.eol():  # RFC 5161 §4: enable = "ENABLE" 1*(SP capability)
        r.sp()
        caps.append(r.atom().upper())
    if not caps:
        r.error("ENABLE needs a capability")
    return Enable(tuple(caps))


def _p_select(r: Reader, uid: bool, readonly: bool = False) -> Select:
    r.sp()
    mbox = r.mailbox()
    condstore = False
    qresync: QResyncParams | None = None
    if not r.eol():
        r.sp()
        r.expect(b"(")  # RFC 9051 §9: select-params = SP "(" select-param *(SP select-param) ")"
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            name = r.atom().upper()
            if name == "CONDSTORE":  # RFC 7162 §3.1.8
                condstore = True
            elif name == "QRESYNC":  # RFC 7162 §3.2.5
                r.sp()
                r.expect(b"(")
                uidvalidity = r.nz_number()
                r.sp()
                modseq = r.number64()
                known: SequenceSet | None = None
                match: tuple[SequenceSet, SequenceSet] | None = None
                if r.try_take(b" "):
                    if r.peek() != 0x28:
                        known = r.seqset()
                        if r.try_take(b" "):
                            match = _seq_match(r)
                    else:
                        match = _seq_match(r)
                r.expect(b")")
                qresync = QResyncParams(uidvalidity, modseq, known, match)
            else:
                r.error(f"Unknown SELECT parameter {name[:40]}")
    return Select(mbox, readonly, condstore, qresync)


def _seq_match(r: Reader) -> tuple[SequenceSet, SequenceSet]:
    r.expect(b"(")  # RFC 7162 §3.2.5: seq-match-data = "(" known-sequence-set SP known-uid-set ")"
    seqs = r.seqset()
    r.sp()
    uids = r.seqset()
    r.expect(b")")
    return seqs, uids


def _p_examine(r: Reader, uid: bool) -> Select:
    return _p_select(r, uid, readonly=True)


def _p_create(r: Reader, uid: bool) -> Create:
    r.sp()
    mbox = r.mailbox()
    use: tuple[str, ...] = ()
    if not r.eol():
        r.sp()
        r.expect(b"(")  # RFC 4466 §2.2 create-params; RFC 6154 §3 "USE" SP "(" [use-attr ...] ")"
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            name = r.atom().upper()
            if name != "USE":
                r.error(f"Unknown CREATE parameter {name[:40]}")
            r.sp()
            use = r.flag_list()
    return Create(mbox, use)


def _p_mailbox(r: Reader, uid: bool) -> MailboxArg:
    r.sp()
    return MailboxArg(r.mailbox())


def _p_rename(r: Reader, uid: bool) -> Rename:
    r.sp()
    old = r.mailbox()
    r.sp()
    return Rename(old, r.mailbox())


_LIST_SELECT = frozenset(("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"))
_LIST_RETURN = frozenset(("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS", "STATUS"))
_STATUS_ITEMS = frozenset(
    "MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT MAILBOXID DELETED-STORAGE".split()
)


def _status_items(r: Reader) -> tuple[str, ...]:
    items = r.paren_atoms()
    if not items:
        r.error("Empty status item list")  # RFC 9051 §9: status-att *(SP status-att)
    for it in items:
        if it not in _STATUS_ITEMS:
            r.error(f"Unknown status item {it[:40]}")
    return items


def _p_list(r: Reader, uid: bool) -> List:
    r.sp()
    selection: tuple[str, ...] = ()
    extended = False
    if r.peek() == 0x28:  # RFC 5258 §3: list-select-opts
        extended = True
        selection = r.paren_atoms()
        for s in selection:
            if s not in _LIST_SELECT:
                r.error(f"Unknown LIST selection option {s[:40]}")
        r.sp()
    ref = r.list_mailbox() if r.peek() != 0x22 and not r.at_literal() else r._decode_mailbox(r.string())
    r.sp()
    patterns: list[str] = []
    if r.try_take(b"("):  # RFC 5258 §3: patterns = "(" list-mailbox *(SP list-mailbox) ")"
        extended = True
        patterns.append(r.list_mailbox())
        while not r.try_take(b")"):
            r.sp()
            patterns.append(r.list_mailbox())
    else:
        patterns.append(r.list_mailbox())
    ret: list[str] = []
    status: tuple[str, ...] | None = None
    if not r.eol():
        extended = True
        r.sp()
        if not r.try_take_ci(b"RETURN"):
            r.error("Expected RETURN")
        r.sp()
        r.expect(b"(")
        while not r.try_take(b")"):
            if ret or status is not None:
                r.sp()
            opt = r.atom().upper()
            if opt not in _LIST_RETURN:
                r.error(f"Unknown LIST return option {opt[:40]}")
            if opt == "STATUS":  # RFC 5819 §2: "STATUS" SP "(" status-att *(SP status-att) ")"
                r.sp()
                status = _status_items(r)
            else:
                ret.append(opt)
    return List(ref, tuple(patterns), selection, tuple(ret), status, extended)


def _p_lsub(r: Reader, uid: bool) -> Lsub:
    r.sp()
    ref = r._decode_mailbox(r.astring())
    r.sp()
    return Lsub(ref, r.list_mailbox())


def _p_status(r: Reader, uid: bool) -> Status:
    r.sp()
    mbox = r.mailbox()
    r.sp()
    return Status(mbox, _status_items(r))


def _p_append(r: Reader, uid: bool) -> Append:
    r.sp()
    mbox = r.mailbox()
    messages: list[AppendMessage] = []
    # RFC 3502 §6.3.11: append = "APPEND" SP mailbox 1*append-message
    while not r.eol() or not messages:
        r.sp()
        flags: tuple[str, ...] = ()
        date: datetime.datetime | None = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            r.sp()
        if r.peek() == 0x22:
            date = r.date_time()
            r.sp()
        if r.at_literal():
            lit = r.literal(allow_binary=True)  # RFC 3516 §4.4: literal8 allowed for APPEND
            messages.append(AppendMessage(flags, date, lit.data, lit.binary))
        elif r.try_take_ci(b"CATENATE"):  # RFC 4469 §5
            r.sp()
            r.expect(b"(")
            parts: list[CatenateURL | CatenateText] = []
            while not r.try_take(b")"):
                if parts:
                    r.sp()
                kind = r.atom().upper()
                r.sp()
                if kind == "URL":
                    parts.append(CatenateURL(r.astring()))
                elif kind == "TEXT":
                    lit = r.literal(allow_binary=True)
                    parts.append(CatenateText(lit.data, lit.binary))
                else:
                    r.error("Expected URL or TEXT")
            if not parts:
                r.error("Empty CATENATE")
            messages.append(AppendMessage(flags, date, catenate=tuple(parts)))
        elif r.try_take_ci(b"UTF8"):  # RFC 6855 §4: "UTF8" SP "(" literal8 ")"
            r.sp()
            r.expect(b"(")
            lit = r.literal(allow_binary=True)
            r.expect(b")")
            messages.append(AppendMessage(flags, date, lit.data, lit.binary, utf8=True))
        else:
            r.error("Expected message literal")
    return Append(mbox, tuple(messages))


def _p_getquota(r: Reader, uid: bool) -> GetQuota:
    r.sp()
    return GetQuota(r._decode_mailbox(r.astring()))  # RFC 9208 §4.2: quota-root-name = astring


def _p_setquota(r: Reader, uid: bool) -> SetQuota:
    r.sp()
    root = r._decode_mailbox(r.astring())
    r.sp()
    r.expect(b"(")  # RFC 9208 §7: "(" [setquota-resource *(SP setquota-resource)] ")"
    limits: list[tuple[str, int]] = []
    while not r.try_take(b")"):
        if limits:
            r.sp()
        name = r.atom().upper()
        r.sp()
        limits.append((name, r.number64()))
    return SetQuota(root, tuple(limits))


def _p_id(r: Reader, uid: bool) -> Id:
    r.sp()
    if r.try_take_ci(b"NIL"):  # RFC 2971 §4: id_params_list ::= "(" ... ")" / nil
        return Id(None)
    r.expect(b"(")
    params: list[tuple[bytes, bytes | None]] = []
    while not r.try_take(b")"):
        if params:
            r.sp()
        if len(params) >= MAX_ID_PARAMS:  # RFC 2971 §3.3
            r.error("Too many ID parameters")
        key = r.string()
        r.sp()
        params.append((key, r.nstring()))
    return Id(tuple(params))


def _p_compress(r: Reader, uid: bool) -> Compress:
    r.sp()
    return Compress(r.atom().upper())


def _p_getmetadata(r: Reader, uid: bool) -> GetMetadata:
    r.sp()
    maxsize: int | None = None
    depth: str | None = None
    if r.try_take(b"("):  # RFC 5464 §4.2: getmetadata-options
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            opt = r.atom().upper()
            r.sp()
            if opt == "MAXSIZE":
                maxsize = r.number()
            elif opt == "DEPTH":
                depth = r.atom().upper()
                if depth not in ("0", "1", "INFINITY"):
                    r.error("Bad DEPTH")
            else:
                r.error(f"Unknown GETMETADATA option {opt[:40]}")
        r.sp()
    mbox = r.mailbox()
    r.sp()
    entries: list[str] = []
    if r.try_take(b"("):  # entries = entry / "(" entry *(SP entry) ")"
        entries.append(r.astring_str())
        while not r.try_take(b")"):
            r.sp()
            entries.append(r.astring_str())
    else:
        entries.append(r.astring_str())
    return GetMetadata(mbox, tuple(entries), maxsize, depth)


def _p_setmetadata(r: Reader, uid: bool) -> SetMetadata:
    r.sp()
    mbox = r.mailbox()
    r.sp()
    r.expect(b"(")  # RFC 5464 §4.3: "(" entry-value *(SP entry-value) ")"
    entries: list[tuple[str, bytes | None]] = []
    while not r.try_take(b")"):
        if entries:
            r.sp()
        name = r.astring_str()
        r.sp()
        value: bytes | None
        if r.at_literal():
            value = r.literal(allow_binary=True).data  # value = nstring / literal8
        else:
            value = r.nstring()
        entries.append((name, value))
    if not entries:
        r.error("Empty SETMETADATA")
    return SetMetadata(mbox, tuple(entries))


def _mailbox_filter(r: Reader, allowed: frozenset[MailboxFilterKind]) -> MailboxFilter:
    word = r.atom().upper()
    try:
        kind = MailboxFilterKind(word)
    except ValueError:
        r.error(f"Unknown mailbox filter {word[:40]}")
    if kind not in allowed:
        r.error(f"Mailbox filter {word} not allowed here")
    boxes: list[str] = []
    if kind in (MailboxFilterKind.SUBTREE, MailboxFilterKind.SUBTREE_ONE, MailboxFilterKind.MAILBOXES):
        r.sp()  # RFC 5465 §6: one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
        if r.try_take(b"("):
            boxes.append(r.mailbox())
            while not r.try_take(b")"):
                r.sp()
                boxes.append(r.mailbox())
        else:
            boxes.append(r.mailbox())
    return MailboxFilter(kind, tuple(boxes))


_NOTIFY_FILTERS = frozenset(MailboxFilterKind) - {MailboxFilterKind.SUBTREE_ONE}
_ESEARCH_FILTERS = frozenset(MailboxFilterKind) - {MailboxFilterKind.SELECTED_DELAYED}
_NOTIFY_EVENTS = {
    e.upper(): e
    for e in (
        "MessageNew MessageExpunge FlagChange AnnotationChange MailboxName SubscriptionChange "
        "MailboxMetadataChange ServerMetadataChange"
    ).split()
}


def _p_notify(r: Reader, uid: bool) -> Notify:
    r.sp()
    word = r.atom().upper()
    if word == "NONE":  # RFC 5465 §6: notify-none = "NONE"
        return Notify(True)
    if word != "SET":
        r.error("Expected SET or NONE")
    r.sp()
    status = r.try_take_ci(b"STATUS")
    if status:
        r.sp()
    groups: list[NotifyEventGroup] = []
    while True:
        r.expect(b"(")  # event-group = "(" filter-mailboxes SP events ")"
        filt = _mailbox_filter(r, _NOTIFY_FILTERS)
        r.sp()
        events: list[NotifyEvent] = []
        if not r.try_take_ci(b"NONE"):
            r.expect(b"(")
            while not r.try_take(b")"):
                if events:
                    r.sp()
                name = r.atom()
                canon = _NOTIFY_EVENTS.get(name.upper())
                if canon is None:
                    r.error(f"Unknown NOTIFY event {name[:40]}")
                atts: tuple[FetchAtt, ...] = ()
                if canon == "MessageNew" and r.try_take(b" ("):
                    atts_l = [_fetch_att(r)]
                    while not r.try_take(b")"):
                        r.sp()
                        atts_l.append(_fetch_att(r))
                    atts = tuple(atts_l)
                events.append(NotifyEvent(canon, atts))
        r.expect(b")")
        groups.append(NotifyEventGroup(filt, tuple(events)))
        if r.eol():
            break
        r.sp()
    return Notify(False, status, tuple(groups))


# RFC 4467 §7: mechanism = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".")
_URLAUTH_MECH = re.compile(rb"[A-Za-z0-9.-]+")


def _p_genurlauth(r: Reader, uid: bool) -> GenUrlAuth:
    items: list[tuple[bytes, str]] = []
    while not r.eol() or not items:
        r.sp()
        url = r.astring()
        r.sp()
        mech = r._match(_URLAUTH_MECH)
        if mech is None:
            r.error("Expected URLAUTH mechanism")
        items.append((url, mech.decode("ascii").upper()))
    return GenUrlAuth(tuple(items))


def _p_resetkey(r: Reader, uid: bool) -> ResetKey:
    if r.eol():
        return ResetKey(None)
    r.sp()
    mbox = r.mailbox()
    mechs: list[str] = []
    while not r.eol():
        r.sp()
        mech = r._match(_URLAUTH_MECH)
        if mech is None:
            r.error("Expected URLAUTH mechanism")
        mechs.append(mech.decode("ascii").upper())
    return ResetKey(mbox, tuple(mechs))


_URLFETCH_PARAMS = frozenset(("BODYPARTSTRUCTURE", "BINARY", "BODY"))


def _urlfetch_ext(r: Reader) -> UrlFetchItem:
    """RFC 5524 §4: "(" url *(SP ("BODYPARTSTRUCTURE" / "BINARY" / "BODY")) ")"; BINARY and
    BODY exclude each other and no parameter may repeat. ``(`` already taken."""
    url = r.astring()
    seen: set[str] = set()
    while not r.try_take(b")"):
        r.sp()
        name = r.atom().upper()
        if name not in _URLFETCH_PARAMS:
            r.error(f"Unknown URLFETCH parameter {name[:40]}")
        if name in seen or (name in ("BINARY", "BODY") and seen & {"BINARY", "BODY"}):
            r.error(f"Conflicting URLFETCH parameter {name}")
        seen.add(name)
    return UrlFetchItem(
        url,
        binary="BINARY" in seen,
        bodypartstructure="BODYPARTSTRUCTURE" in seen,
        body="BODY" in seen,
        extended=True,
    )


def _p_urlfetch(r: Reader, uid: bool) -> UrlFetch:
    """RFC 4467 §7 ``URLFETCH 1*(SP url)``, RFC 5524 §4 adds the parenthesised form."""
    items: list[UrlFetchItem] = []
    while not r.eol() or not items:
        r.sp()
        if r.try_take(b"("):
            items.append(_urlfetch_ext(r))
        else:
            items.append(UrlFetchItem(r.astring()))
    urls = tuple(i.url for i in items)
    return UrlFetch(urls, tuple(items) if any(i.extended for i in items) else ())


def _p_cancelupdate(r: Reader, uid: bool) -> CancelUpdate:
    """RFC 5267 §4.5: ``CANCELUPDATE 1*(SP quoted)`` (the tags of the searches to stop)."""
    tags: list[str] = []
    while not r.eol() or not tags:
        r.sp()
        tags.append(r.quoted().decode("utf-8", "replace"))
    return CancelUpdate(tuple(tags))


def _p_expunge(r: Reader, uid: bool) -> Expunge | NoArgs:
    if uid:  # RFC 9051 §6.4.9: "UID EXPUNGE" SP sequence-set
        r.sp()
        return Expunge(r.seqset())
    return Expunge()


_SEARCH_RETURN = frozenset(
    ("MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL", "RELEVANCY")
)
_PARTIAL_RANGE = re.compile(rb"-?[1-9][0-9]*:-?[1-9][0-9]*")  # RFC 9394 §2 partial-range


def _return_opts(r: Reader) -> tuple[SearchReturnOption, ...]:
    """search-return-opts = "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"."""
    r.sp()
    r.expect(b"(")
    opts: list[SearchReturnOption] = []
    while not r.try_take(b")"):
        if opts:
            r.sp()
        name = r.atom().upper()
        if name not in _SEARCH_RETURN:  # RFC 4731 §3.1, RFC 5182, RFC 5267 §4.4, RFC 9394
            r.error(f"Unknown RETURN option {name[:40]}")
        value: str | None = None
        if name == "PARTIAL":
            r.sp()
            tok = r._match(_PARTIAL_RANGE)
            if tok is None:
                r.error("Bad PARTIAL range")
            value = tok.decode("ascii")
        opts.append(SearchReturnOption(name, value))
    return tuple(opts)


def _charset_and_program(r: Reader) -> tuple[str | None, SearchKey]:
    charset: str | None = None
    if r.try_take_ci(b"CHARSET"):  # RFC 9051 §6.4.4: ["CHARSET" SP charset SP]
        r.sp()
        charset = r.astring().decode("ascii", "replace").upper()
        r.sp()
    return charset, parse_search_program(r)


def _p_search(r: Reader, uid: bool) -> Search:
    r.sp()
    ret: tuple[SearchReturnOption, ...] | None = None
    if r.try_take_ci(b"RETURN"):
        ret = _return_opts(r)
        r.sp()
    charset, program = _charset_and_program(r)
    return Search(uid, program, charset, ret)


def _p_esearch(r: Reader, uid: bool) -> MultiSearch:
    r.sp()
    sources: list[MailboxFilter] = []
    if r.try_take_ci(b"IN"):  # RFC 7377 §2: esearch-source-opts = "IN" SP "(" source-mbox ")"
        r.sp()
        r.expect(b"(")
        sources.append(_mailbox_filter(r, _ESEARCH_FILTERS))
        while not r.try_take(b")"):
            r.sp()
            sources.append(_mailbox_filter(r, _ESEARCH_FILTERS))
        r.sp()
    ret: tuple[SearchReturnOption, ...] | None = None
    if r.try_take_ci(b"RETURN"):
        ret = _return_opts(r)
        r.sp()
    charset, program = _charset_and_program(r)
    return MultiSearch(tuple(sources), program, charset, ret)


_SIMPLE_FETCH = frozenset(
    "ENVELOPE FLAGS INTERNALDATE RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT BODY BODYSTRUCTURE UID "
    "MODSEQ EMAILID THREADID SAVEDATE PREVIEW".split()
)
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_FETCH_MACROS = {  # RFC 9051 §6.4.5 macros
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


def _section_part(r: Reader) -> tuple[int, ...]:
    part = [r.nz_number()]
    while r.peek() == 0x2E and 0x30 <= (r._cur[r._pos + 1] if r._pos + 1 < len(r._cur) else 0) <= 0x39:
        r.expect(b".")
        part.append(r.nz_number())
    return tuple(part)


def _section(r: Reader, binary: bool) -> Section:
    """section = "[" [section-spec] "]"; section-binary = "[" [section-part] "]" (RFC 9051 §9)."""
    r.expect(b"[")
    if r.try_take(b"]"):
        return Section()
    part: tuple[int, ...] = ()
    if 0x30 <= r.peek() <= 0x39:
        part = _section_part(r)
        if r.try_take(b"]"):
            return Section(part)
        if binary:
            r.error("Bad BINARY section")
        r.expect(b".")
    if binary:
        r.error("Bad BINARY section")
    word = r._match(re.compile(rb"[A-Za-z.]+"))
    text = (word or b"").decode("ascii").upper()
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.sp()  # header-list = "(" header-fld-name *(SP header-fld-name) ")"
        r.expect(b"(")
        names = [r.astring_str()]
        while not r.try_take(b")"):
            r.sp()
            names.append(r.astring_str())
        fields = tuple(names)
    elif text == "MIME":
        if not part:  # RFC 9051 §6.4.5: MIME only with a part number
            r.error("MIME requires a part number")
    elif text not in ("HEADER", "TEXT"):
        r.error("Bad section")
    r.expect(b"]")
    return Section(part, text, fields)


def _fetch_att(r: Reader) -> FetchAtt:
    tok = r._match(_FETCH_NAME)
    if tok is None:
        r.error("Expected fetch attribute")
    name = tok.decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE") and r.peek() == 0x5B:
        binary = name.startswith("BINARY")
        section = _section(r, binary)
        partial: tuple[int, int] | None = None
        if name != "BINARY.SIZE" and r.try_take(b"<"):  # partial = "<" number64 "." nz-number64 ">"
            start = r.number64()
            r.expect(b".")
            length = r.number64()
            if length == 0:
                r.error("Partial length must be non-zero")
            r.expect(b">")
            partial = (start, length)
        return FetchAtt(name, section, partial)
    if name not in _SIMPLE_FETCH:
        r.error(f"Unknown fetch attribute {name[:40]}")
    return FetchAtt(name)


def _p_fetch(r: Reader, uid: bool) -> Fetch:
    r.sp()
    seq = r.seqset()
    r.sp()
    macro: str | None = None
    items: list[FetchAtt] = []
    if r.try_take(b"("):
        items.append(_fetch_att(r))
        while not r.try_take(b")"):
            r.sp()
            items.append(_fetch_att(r))
    else:
        for m, expansion in _FETCH_MACROS.items():
            if r.try_take_ci(m.encode()):
                macro = m
                items.extend(FetchAtt(x) for x in expansion)
                break
        else:
            items.append(_fetch_att(r))
    if uid and not any(i.name == "UID" for i in items):
        items.insert(0, FetchAtt("UID"))  # RFC 9051 §6.4.9: UID FETCH always returns UID
    changedsince: int | None = None
    vanished = False
    if not r.eol():
        r.sp()
        r.expect(b"(")  # RFC 7162 §3.1.4.1 / §3.2.6: fetch-modifiers
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            mod = r.atom().upper()
            if mod == "CHANGEDSINCE":
                r.sp()
                changedsince = r.number64()
            elif mod == "VANISHED" and uid:  # RFC 7162 §3.2.6: only in UID FETCH
                vanished = True
            else:
                r.error(f"Unknown FETCH modifier {mod[:40]}")
        if vanished and changedsince is None:
            r.error("VANISHED requires CHANGEDSINCE")  # RFC 7162 §3.2.6
    return Fetch(uid, seq, tuple(items), macro, changedsince, vanished)


def _p_store(r: Reader, uid: bool) -> Store:
    r.sp()
    seq = r.seqset()
    r.sp()
    unchanged: int | None = None
    if r.try_take(b"("):  # RFC 7162 §3.1.3: store-modifier "UNCHANGEDSINCE" SP mod-sequence-valzer
        if not r.try_take_ci(b"UNCHANGEDSINCE"):
            r.error("Unknown STORE modifier")
        r.sp()
        unchanged = r.number64()
        r.expect(b")")
        r.sp()
    mode = StoreMode.ADD if r.try_take(b"+") else StoreMode.REMOVE if r.try_take(b"-") else StoreMode.REPLACE
    word = r.atom().upper()
    if word not in ("FLAGS", "FLAGS.SILENT"):  # RFC 9051 §9: store-att-flags
        r.error("Expected FLAGS or FLAGS.SILENT")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        fl = [r.flag()]
        while not r.eol():
            r.sp()
            fl.append(r.flag())
        flags = tuple(fl)
    return Store(uid, seq, mode, word.endswith(".SILENT"), flags, unchanged)


def _p_copy(r: Reader, uid: bool) -> CopyMove:
    r.sp()
    seq = r.seqset()
    r.sp()
    return CopyMove(uid, seq, r.mailbox())


_SORT_KEYS = frozenset("ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO".split())


def _p_sort(r: Reader, uid: bool) -> Sort:
    r.sp()
    ret: tuple[SearchReturnOption, ...] | None = None
    if r.try_take_ci(b"RETURN"):  # RFC 5267 §3 (ESORT)
        ret = _return_opts(r)
        r.sp()
    r.expect(b"(")  # RFC 5256 §5: sort-criteria = "(" sort-criterion *(SP sort-criterion) ")"
    crit: list[SortCriterion] = []
    while not r.try_take(b")"):
        if crit:
            r.sp()
        reverse = False
        key = r.atom().upper()
        if key == "REVERSE":
            reverse = True
            r.sp()
            key = r.atom().upper()
        if key not in _SORT_KEYS:  # RFC 5256 §3, RFC 5957 §3 DISPLAYFROM/DISPLAYTO
            r.error(f"Unknown sort key {key[:40]}")
        crit.append(SortCriterion(key, reverse))
    if not crit:
        r.error("Empty sort criteria")
    r.sp()
    charset = r.astring().decode("ascii", "replace").upper()
    r.sp()
    return Sort(uid, tuple(crit), charset, parse_search_program(r), ret)


def _p_thread(r: Reader, uid: bool) -> Thread:
    r.sp()
    alg = r.atom().upper()  # RFC 5256 §5: thread-alg = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext
    r.sp()
    charset = r.astring().decode("ascii", "replace").upper()
    r.sp()
    return Thread(uid, alg, charset, parse_search_program(r))


_Parser = Callable[[Reader, bool], CommandArgs]

COMMANDS: dict[str, _Parser] = {
    "CAPABILITY": _p_noargs,
    "NOOP": _p_noargs,
    "LOGOUT": _p_noargs,
    "STARTTLS": _p_noargs,
    "AUTHENTICATE": _p_authenticate,
    "LOGIN": _p_login,
    "ENABLE": _p_enable,
    "SELECT": _p_select,
    "EXAMINE": _p_examine,
    "CREATE": _p_create,
    "DELETE": _p_mailbox,
    "RENAME": _p_rename,
    "SUBSCRIBE": _p_mailbox,
    "UNSUBSCRIBE": _p_mailbox,
    "LIST": _p_list,
    "LSUB": _p_lsub,
    "NAMESPACE": _p_noargs,
    "STATUS": _p_status,
    "APPEND": _p_append,
    "IDLE": _p_noargs,
    "CHECK": _p_noargs,
    "CLOSE": _p_noargs,
    "UNSELECT": _p_noargs,
    "UNAUTHENTICATE": _p_noargs,
    "EXPUNGE": _p_expunge,
    "SEARCH": _p_search,
    "FETCH": _p_fetch,
    "STORE": _p_store,
    "COPY": _p_copy,
    "MOVE": _p_copy,
    "SORT": _p_sort,
    "THREAD": _p_thread,
    "GETQUOTA": _p_getquota,
    "GETQUOTAROOT": _p_mailbox,
    "SETQUOTA": _p_setquota,
    "ID": _p_id,
    "COMPRESS": _p_compress,
    "GETMETADATA": _p_getmetadata,
    "SETMETADATA": _p_setmetadata,
    "NOTIFY": _p_notify,
    "GENURLAUTH": _p_genurlauth,
    "RESETKEY": _p_resetkey,
    "URLFETCH": _p_urlfetch,
    "CANCELUPDATE": _p_cancelupdate,
    "ESEARCH": _p_esearch,
}
"""Command name → argument parser; the adapter's dispatch table mirrors these names."""

# RFC 9051 §6.4.9: UID prefixes COPY, MOVE, FETCH, SEARCH, STORE, EXPUNGE;
# RFC 5256 §3 adds SORT and THREAD.
UID_COMMANDS = frozenset(("COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"))


def parse_command(segs: list[bytes | _Literal], utf8: bool = False) -> Command:
    """Parse a framed command (line segments and literals). Raises :class:`ParseError`."""
    r = Reader(segs, utf8)
    tag_b = r._match(_TAG)
    if tag_b is None:
        r.error("Invalid tag")
    tag = tag_b.decode("ascii")
    r.sp()
    name = r.atom().upper()
    uid = False
    if name == "UID":
        r.sp()
        sub = r.atom().upper()
        if sub not in UID_COMMANDS:
            r.error(f"Unknown UID command {sub[:40]}")
        uid = True
        name = sub
    parser = COMMANDS.get(name)
    if parser is None:
        r.error(f"Unknown command {name[:40]}")
    args = parser(r, uid)
    r.end()
    return Command(tag, f"UID {name}" if uid else name, args)


_DIGITS_NONSYNC_TAIL = re.compile(rb"[0-9]+\+\}")


def _find_marker(line: bytes) -> tuple[int, bool, bytes, bool] | None:
    """A literal marker ending ``line``: (start, literal8?, size digits, non-synchronising?).

    Scans back to the last "{" so that an absurdly long size is still recognised (and refused)
    rather than mistaken for the end of the command."""
    if not line.endswith(b"}"):
        return None
    brace = line.rfind(b"{")
    if brace < 0:
        return None
    m = _MARKER.match(line, brace - 1 if brace > 0 and line[brace - 1] == 0x7E else brace)
    if m is None:
        return None
    return m.start(), m.group(1) == b"~", m.group(2), m.group(3) == b"+"


def _tag_of(line: bytes) -> str | None:
    """The tag at the start of ``line`` if it is a valid one (for error replies)."""
    m = _TAG.match(line)
    if m is None or (m.end() < len(line) and line[m.end()] != 0x20) or m.end() > 64:
        return None
    return m.group(0).decode("ascii")


def _reply(tag: str | None, status: str, text: str, code: str | None = None) -> bytes:
    return f"{tag or '*'} {status} {f'[{code}] ' if code else ''}{text}\r\n".encode("ascii", "replace")


# ------------------------------------------------------------------------- the state machine


class _Mode(enum.Enum):
    LINE = "line"  # reading a command line (segment)
    LITERAL = "literal"  # reading an accepted literal
    SKIP_LITERAL = "skip-literal"  # discarding a refused non-synchronising literal
    DISCARD = "discard"  # discarding the rest of a refused command up to CRLF
    AUTH = "auth"  # SASL continuation line expected
    IDLE = "idle"  # DONE expected


class IMAPServerProtocol:
    """The server side of one IMAP connection, without I/O (see the module docstring)."""

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_literal: int = DEFAULT_MAX_LITERAL,
        max_append_literal: int = DEFAULT_MAX_APPEND_LITERAL,
        max_command_octets: int = DEFAULT_MAX_COMMAND_OCTETS,
        literal_minus: bool = False,
        utf8_enabled: bool = False,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_append_literal = max_append_literal
        self.max_command_octets = max_command_octets
        # True when the server advertises LITERAL- instead of LITERAL+ (RFC 7888 §4).
        self.literal_minus = literal_minus
        # Set by the adapter after ENABLE UTF8=ACCEPT or IMAP4rev2 (RFC 6855 §3, RFC 9051 §6.3.1).
        self.utf8_enabled = utf8_enabled
        self._buf = bytearray()
        self._scan = 0  # where to resume searching for CRLF in _buf
        self._events: collections.deque[Event] = collections.deque()
        self._mode = _Mode.LINE
        self._segs: list[bytes | _Literal] = []
        self._line_octets = 0
        self._literal_octets = 0
        self._lit_need = 0
        self._lit_binary = False
        self._lit_buf = bytearray()
        self._skip = 0
        self._discard_tail = b""
        self._mode_tag: str | None = None

    # -- public API
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client. Nothing is parsed until :meth:`next_event`."""
        self._buf += data

    def next_event(self) -> Event | _NeedData:
        """The next event, or :data:`NEED_DATA`."""
        while not self._events:
            if not self._step():
                return NEED_DATA
        return self._events.popleft()

    def begin_auth_continuation(self, tag: str | None = None) -> None:
        """The adapter sent ``+ challenge``; the next line is an :class:`AuthContinuation`."""
        self._mode, self._mode_tag = _Mode.AUTH, tag

    def begin_idle(self, tag: str | None = None) -> None:
        """The adapter sent ``+ idling``; the next line must be DONE (RFC 9051 §6.3.13)."""
        self._mode, self._mode_tag = _Mode.IDLE, tag

    def buffered_octets(self) -> int:
        """Octets received but not yet framed (must be 0 right after STARTTLS)."""
        return len(self._buf)

    def take_buffered(self) -> bytes:
        """Remove and return unframed octets: discard them after STARTTLS (RFC 9051 §6.2.1),
        feed them through the decompressor after COMPRESS (RFC 4978 §3)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return data

    # -- framing
    def _reset_command(self) -> None:
        self._segs = []
        self._line_octets = 0
        self._literal_octets = 0
        self._mode = _Mode.LINE

    def _cmd_tag(self) -> str | None:
        first = self._segs[0] if self._segs else bytes(self._buf[:80])
        return _tag_of(first) if isinstance(first, bytes) else None

    def _take_line(self) -> bytes | None:
        """Remove and return the next line without CRLF, or None if incomplete."""
        idx = self._buf.find(b"\r\n", self._scan)
        if idx < 0:
            self._scan = max(len(self._buf) - 1, 0)
            return None
        line = bytes(self._buf[:idx])
        del self._buf[: idx + 2]
        self._scan = 0
        return line

    def _step(self) -> bool:
        """Advance the state machine; False when more data is needed."""
        mode = self._mode
        if mode is _Mode.LITERAL:
            take = min(self._lit_need, len(self._buf))
            if take == 0:
                return False
            self._lit_buf += self._buf[:take]
            del self._buf[:take]
            self._lit_need -= take
            if self._lit_need == 0:
                self._segs.append(_Literal(bytes(self._lit_buf), self._lit_binary))
                self._lit_buf = bytearray()
                self._mode = _Mode.LINE
            return True
        if mode is _Mode.SKIP_LITERAL:
            take = min(self._skip, len(self._buf))
            if take == 0:
                return False
            del self._buf[:take]
            self._skip -= take
            if self._skip == 0:
                self._mode, self._discard_tail = _Mode.DISCARD, b""
            return True
        if mode is _Mode.DISCARD:
            return self._step_discard()
        line = self._take_line()
        limit = self.max_line - self._line_octets
        if line is None:
            if len(self._buf) > limit:
                self._too_long()
                return True
            return False
        if len(line) > limit:
            self._too_long(line)
            return True
        if mode is _Mode.AUTH:
            self._mode = _Mode.LINE
            self._events.append(AuthContinuation(line))
            return True
        if mode is _Mode.IDLE:
            self._mode = _Mode.LINE
            if line.upper() == b"DONE":  # RFC 9051 §6.3.13: idle = "IDLE" CRLF "DONE"
                self._events.append(IdleDone())
            else:
                tag = self._mode_tag
                self._events.append(CommandError(tag, _reply(tag, "BAD", "Expected DONE")))
            return True
        self._line_octets += len(line) + 2
        marker = _find_marker(line)
        if marker is None:
            self._segs.append(line)
            self._finish_command()
            return True
        start, binary, digits, nonsync = marker
        self._segs.append(line[:start])
        self._begin_literal(binary, digits, nonsync)
        return True

    def _begin_literal(self, binary: bool, digits: bytes, nonsync: bool) -> None:
        tag = self._cmd_tag()
        # Size checked on the digit count before int(): a 1000-digit number never becomes an int.
        size = int(digits) if len(digits) <= 19 else _MAX_NUMBER64 + 1
        first = self._segs[0]
        words = first.split(b" ", 3) if isinstance(first, bytes) else []
        is_append = len(words) > 1 and words[1].upper() == b"APPEND"
        limit = self.max_append_literal if is_append else self.max_literal
        if nonsync and self.literal_minus:
            limit = min(limit, LITERAL_MINUS_MAX)  # RFC 7888 §4
        if size > limit or self._literal_octets + size > self.max_command_octets:
            self._segs = []
            if nonsync:  # RFC 7888 §4: BAD [TOOBIG], then consume (or close)
                reply = _reply(tag, "BAD", "Literal too big", "TOOBIG")
                self._skip = size
                self._mode = _Mode.SKIP_LITERAL if size else _Mode.DISCARD
                self._discard_tail = b""
            else:  # RFC 9051 §7.1 TOOBIG; no "+" sent, so the client sends nothing more
                reply = _reply(tag, "NO", "Literal too big", "TOOBIG")
                self._reset_command()
            self._events.append(LiteralTooBig(tag, reply, size, not nonsync))
            return
        self._literal_octets += size
        self._lit_need, self._lit_binary = size, binary
        self._lit_buf = bytearray()
        if size:
            self._mode = _Mode.LITERAL
        else:
            self._segs.append(_Literal(b"", binary))
        if not nonsync:
            self._events.append(ContinuationNeeded())  # RFC 9051 §7.5

    def _finish_command(self) -> None:
        segs = self._segs
        self._reset_command()
        if segs == [b""]:
            self._events.append(CommandError(None, _reply(None, "BAD", "Empty command line")))
            return
        try:
            self._events.append(parse_command(segs, self.utf8_enabled))
        except ParseError as exc:
            first = segs[0]
            tag = _tag_of(first) if isinstance(first, bytes) else None
            self._events.append(CommandError(tag, _reply(tag, "BAD", exc.message, exc.code)))

    def _too_long(self, line: bytes | None = None) -> None:
        """Over-long command line: BAD now, discard the rest of the command (RFC 9051 §4)."""
        tag = self._cmd_tag() if self._segs else _tag_of(bytes(line if line is not None else self._buf[:80]))
        if self._mode in (_Mode.AUTH, _Mode.IDLE):
            tag = self._mode_tag
        self._segs = []
        self._line_octets = self._literal_octets = 0
        self._events.append(CommandError(tag, _reply(tag, "BAD", "Command line too long")))
        self._mode = _Mode.DISCARD
        if line is not None:  # the whole line is here: only a trailing literal remains
            self._discard_tail = line[-_MAX_MARKER:]
            self._after_discarded_line()
        else:
            keep = 1 if self._buf.endswith(b"\r") else 0
            self._discard_tail = bytes(
                self._buf[max(0, len(self._buf) - _MAX_MARKER - keep) : len(self._buf) - keep]
            )
            del self._buf[: len(self._buf) - keep]
            self._scan = 0

    def _step_discard(self) -> bool:
        idx = self._buf.find(b"\r\n")
        if idx < 0:
            if len(self._buf) > 1:
                keep = 1 if self._buf.endswith(b"\r") else 0
                self._discard_tail = (self._discard_tail + bytes(self._buf[: len(self._buf) - keep]))[
                    -_MAX_MARKER:
                ]
                del self._buf[: len(self._buf) - keep]
            return False
        self._discard_tail = (self._discard_tail + bytes(self._buf[:idx]))[-_MAX_MARKER:]
        del self._buf[: idx + 2]
        self._scan = 0
        self._after_discarded_line()
        return True

    def _after_discarded_line(self) -> None:
        """A discarded line ended: skip a following non-synchronising literal, else resume."""
        tail, self._discard_tail = self._discard_tail, b""
        marker = _find_marker(tail)
        if marker is not None and marker[3]:
            digits = marker[2]
            self._skip = int(digits) if len(digits) <= 19 else _MAX_NUMBER64
            self._mode = _Mode.SKIP_LITERAL if self._skip else _Mode.DISCARD
            return
        if marker is None and _DIGITS_NONSYNC_TAIL.fullmatch(tail):
            # A non-synchronising literal whose size has more digits than we kept: larger than
            # any limit. Skip "forever"; the adapter closes the connection (module docstring).
            self._skip = _MAX_NUMBER64
            self._mode = _Mode.SKIP_LITERAL
            return
        # A synchronising literal is never sent: we send no "+" for a refused command.
        self._reset_command()
