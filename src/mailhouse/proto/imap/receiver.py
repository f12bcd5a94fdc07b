"""Sans-IO IMAP server protocol core: the receiver — framing of lines, literals, continuations,
and the IDLE and AUTHENTICATE modes — over the command grammar (``grammar.py``).

RFCs: RFC 9051 (IMAP4rev2) §2.2 (commands, tags), §4.3 (literals), §7.5 (continuation
request), §9 (formal syntax); RFC 3501 (IMAP4rev1); RFC 7888 (LITERAL+ / LITERAL-);
RFC 3516 (BINARY, literal8); RFC 4959 (SASL-IR); RFC 6855 (UTF8=ACCEPT); each extension is
cited at its parser in the ``grammar_*`` modules.

Layout of the core: ``reader`` (lexer: :class:`~mailhouse.proto.imap.reader.Reader` and its
tokens) → ``grammar_*`` (one module per command family) → ``grammar`` (the command table,
:func:`~mailhouse.proto.imap.grammar.parse_command`) → this module (framing, events out).

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
* Before authentication the literal limits are far smaller: each literal at most
  ``pre_auth_max_literal`` (:data:`PRE_AUTH_MAX_LITERAL`, 8 KiB) and all literals of one command
  at most ``pre_auth_max_command_octets`` (:data:`PRE_AUTH_MAX_COMMAND_OCTETS`), APPEND
  included — an anonymous client cannot make the server buffer a message. The core starts
  unauthenticated; the adapter calls :meth:`~IMAPServerProtocol.set_authenticated` at login
  (``True``) and at UNAUTHENTICATE (``False``, RFC 8437). A refused literal is answered before
  any ``+`` is sent, exactly like one over the authenticated limits (below).
* No recursion proportional to input: only search keys nest, bounded by
  :data:`~mailhouse.proto.imap.search.MAX_SEARCH_DEPTH`; every other parenthesised
  construct has a fixed grammar depth.
* Every error the core decides (syntax, limits, unknown command) becomes a
  :class:`CommandError` (typed: status, code, text, kind) / :class:`LiteralTooBig` carrying
  the exact BAD/NO reply; the connection stays usable.

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
import enum
import re

from mailhouse.proto.events import NEED_DATA, NeedData
from mailhouse.proto.imap.errors import ParseError, ReplyStatus, status_line
from mailhouse.proto.imap.events import (
    AuthContinuation,
    CommandError,
    ContinuationNeeded,
    Event,
    IdleDone,
    LiteralTooBig,
)
from mailhouse.proto.imap.grammar import parse_command
from mailhouse.proto.imap.reader import MAX_NUMBER64, TAG, LiteralData, Segment

__all__ = [
    "PRE_AUTH_MAX_COMMAND_OCTETS",
    "PRE_AUTH_MAX_LITERAL",
    "DEFAULT_MAX_APPEND_LITERAL",
    "DEFAULT_MAX_COMMAND_OCTETS",
    "DEFAULT_MAX_LINE",
    "DEFAULT_MAX_LITERAL",
    "LITERAL_MINUS_MAX",
    "NEED_DATA",
    "IMAPServerProtocol",
]

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
# Before authentication a literal carries at most a user name, a password or an ID value
# (RFC 2971 §3.3: ≤ 1024 octets); SASL-IR and SASL responses travel on the line, not in literals
# (RFC 4959 §3, RFC 9051 §6.2.2). 8 KiB is ample for those and matches Dovecot's login process
# (MAX_IMAP_LINE 8192, "* BYE Literal size too large" beyond it), so an anonymous client
# cannot make the server buffer a message (APPEND {40000000} pre-login: NO [TOOBIG], no "+").
PRE_AUTH_MAX_LITERAL = 8 * 1024
# All literals of one command before authentication: an ID command carries up to 30 values
# (RFC 2971 §3.3); 64 KiB bounds a command built of many small literals to a line's worth.
PRE_AUTH_MAX_COMMAND_OCTETS = 64 * 1024
# RFC 7888 §4 (LITERAL-): non-synchronising literals are limited to 4096 octets.
LITERAL_MINUS_MAX = 4096
# Tail of a discarded line kept to spot a literal marker ("~{" + 19 digits + "+}" fits);
# a longer size is larger than every limit anyway (number64, RFC 9051 §9).
_MAX_MARKER = 32
# Literal marker at the end of a line: literal = "{" number64 ["+"] "}" CRLF (RFC 9051 §9,
# "+" RFC 7888 §3), literal8 = "~{" number64 "}" CRLF (RFC 3516 §4.3).
_MARKER = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
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
    m = TAG.match(line)
    if m is None or (m.end() < len(line) and line[m.end()] != 0x20) or m.end() > 64:
        return None
    return m.group(0).decode("ascii")


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
        authenticated: bool = False,
        pre_auth_max_literal: int = PRE_AUTH_MAX_LITERAL,
        pre_auth_max_command_octets: int = PRE_AUTH_MAX_COMMAND_OCTETS,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_append_literal = max_append_literal
        self.max_command_octets = max_command_octets
        self.pre_auth_max_literal = pre_auth_max_literal
        self.pre_auth_max_command_octets = pre_auth_max_command_octets
        self._authenticated = authenticated
        # True when the server advertises LITERAL- instead of LITERAL+ (RFC 7888 §4).
        self.literal_minus = literal_minus
        # Set by the adapter after ENABLE UTF8=ACCEPT or IMAP4rev2 (RFC 6855 §3, RFC 9051 §6.3.1).
        self.utf8_enabled = utf8_enabled
        self._buf = bytearray()
        self._scan = 0  # where to resume searching for CRLF in _buf
        self._events: collections.deque[Event] = collections.deque()
        self._mode = _Mode.LINE
        self._segs: list[Segment] = []
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

    def next_event(self) -> Event | NeedData:
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

    @property
    def authenticated(self) -> bool:
        """Whether the authenticated literal limits apply (see :meth:`set_authenticated`)."""
        return self._authenticated

    def set_authenticated(self, authenticated: bool) -> None:
        """Switch literal limits: ``True`` after LOGIN/AUTHENTICATE succeeded (or PREAUTH),
        ``False`` after UNAUTHENTICATE (RFC 8437 §3). Applies from the next literal announced;
        framing is lazy, so a command pipelined after LOGIN sees the new limits."""
        self._authenticated = authenticated

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
                self._segs.append(LiteralData(bytes(self._lit_buf), self._lit_binary))
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
                self._events.append(CommandError(tag, ReplyStatus.BAD, "Expected DONE"))
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
        size = int(digits) if len(digits) <= 19 else MAX_NUMBER64 + 1
        first = self._segs[0]
        words = first.split(b" ", 3) if isinstance(first, bytes) else []
        is_append = len(words) > 1 and words[1].upper() == b"APPEND"
        limit = self.max_append_literal if is_append else self.max_literal
        command_limit = self.max_command_octets
        if not self._authenticated:  # pre-login: a few KB, APPEND included (module docstring)
            limit = min(limit, self.pre_auth_max_literal)
            command_limit = min(command_limit, self.pre_auth_max_command_octets)
        if nonsync and self.literal_minus:
            limit = min(limit, LITERAL_MINUS_MAX)  # RFC 7888 §4
        if size > limit or self._literal_octets + size > command_limit:
            self._segs = []
            if nonsync:  # RFC 7888 §4: BAD [TOOBIG], then consume (or close)
                reply = status_line(tag, ReplyStatus.BAD, "Literal too big", "TOOBIG")
                self._skip = size
                self._mode = _Mode.SKIP_LITERAL if size else _Mode.DISCARD
                self._discard_tail = b""
            else:  # RFC 9051 §7.1 TOOBIG; no "+" sent, so the client sends nothing more
                reply = status_line(tag, ReplyStatus.NO, "Literal too big", "TOOBIG")
                self._reset_command()
            self._events.append(LiteralTooBig(tag, reply, size, not nonsync))
            return
        self._literal_octets += size
        self._lit_need, self._lit_binary = size, binary
        self._lit_buf = bytearray()
        if size:
            self._mode = _Mode.LITERAL
        else:
            self._segs.append(LiteralData(b"", binary))
        if not nonsync:
            self._events.append(ContinuationNeeded())  # RFC 9051 §7.5

    def _finish_command(self) -> None:
        segs = self._segs
        self._reset_command()
        if segs == [b""]:
            self._events.append(CommandError(None, ReplyStatus.BAD, "Empty command line"))
            return
        try:
            self._events.append(parse_command(segs, self.utf8_enabled))
        except ParseError as exc:
            first = segs[0]
            tag = _tag_of(first) if isinstance(first, bytes) else None
            self._events.append(CommandError(tag, ReplyStatus.BAD, exc.message, exc.code, exc.kind))

    def _too_long(self, line: bytes | None = None) -> None:
        """Over-long command line: BAD now, discard the rest of the command (RFC 9051 §4)."""
        tag = self._cmd_tag() if self._segs else _tag_of(bytes(line if line is not None else self._buf[:80]))
        if self._mode in (_Mode.AUTH, _Mode.IDLE):
            tag = self._mode_tag
        self._segs = []
        self._line_octets = self._literal_octets = 0
        self._events.append(CommandError(tag, ReplyStatus.BAD, "Command line too long"))
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
            self._skip = int(digits) if len(digits) <= 19 else MAX_NUMBER64
            self._mode = _Mode.SKIP_LITERAL if self._skip else _Mode.DISCARD
            return
        if marker is None and _DIGITS_NONSYNC_TAIL.fullmatch(tail):
            # A non-synchronising literal whose size has more digits than we kept: larger than
            # any limit. Skip "forever"; the adapter closes the connection (module docstring).
            self._skip = MAX_NUMBER64
            self._mode = _Mode.SKIP_LITERAL
            return
        # A synchronising literal is never sent: we send no "+" for a refused command.
        self._reset_command()
