"""Sans-IO SMTP server protocol core (RFC 5321 + ESMTP extensions), stdlib only.

Purpose
    Turn the bytes an SMTP client sends into typed events, and typed replies into
    bytes, while owning every *syntactic* rule of the protocol: command syntax,
    command order, line limits, DATA dot-stuffing and end-of-data detection,
    BDAT framing, the AUTH continuation dance and the STARTTLS buffer rule.  It
    never decides policy (may this sender send? is this recipient local? is this
    password right?): the asyncio adapter in ``smtpserver/`` asks the services
    and answers each event with ``send(reply)``.  The same reply/line rules are
    used by the client core in ``proto/smtp_client.py``.

RFCs
    RFC 5321 (SMTP), RFC 1869/5321 §2.2 (ESMTP parameters), RFC 1870 (SIZE),
    RFC 6152 (8BITMIME), RFC 3030 (CHUNKING/BDAT, BINARYMIME), RFC 2920
    (PIPELINING), RFC 3207 (STARTTLS), RFC 4954 (AUTH), RFC 3461 (DSN, xtext),
    RFC 6531 (SMTPUTF8), RFC 2034/3463 (enhanced status codes).

Usage (h11 style)
    ``receive_data(b)`` buffers bytes; ``next_event()`` returns one event or
    ``NEED_DATA``; every event except ``MessageChunk`` and ``Bdat`` must be
    answered with exactly one ``send(reply)`` before ``next_event()`` is called
    again (``LocalProtocolError`` otherwise).  The reply moves the state: a 250
    to ``Helo`` greets, a 250 to ``Mail`` opens the transaction, a 354 to
    ``Data`` switches the reader into DATA mode, a 334 to ``Auth`` or
    ``AuthResponse`` makes the next line an ``AuthResponse``, a 220 to
    ``StartTLS`` discards buffered plaintext and freezes input until
    ``start_tls_done()``, a 221 or any 421 closes.  Because parsing is lazy
    (one command per ``next_event``), pipelined commands (RFC 2920) are always
    judged against the state produced by the replies to the commands before them.

Invariants
    * Only ``<CRLF>.<CRLF>`` ends DATA (RFC 5321 §4.1.1.4).  ``<LF>.<LF>``,
      ``<CR>.<CR>``, ``<LF>.<CRLF>``, ``<CRLF>.<LF>``, ``<CRLF>.<CR>`` never end
      the message nor start a second one (SMTP smuggling, CVE-2023-51764 class).
    * Bare CR / bare LF in DATA is *not* normalised: bytes pass through unchanged
      and ``MessageEnd.bare_newline`` is set; the adapter MUST then reject the
      message with ``REPLY_BARE_NEWLINE`` (550 5.6.2), as Postfix
      ``smtpd_forbid_bare_newline = reject`` does.  Rejecting, not repairing,
      means we never accept and relay a message whose line structure another
      server could interpret differently.
    * Command lines must end in CRLF; a bare LF or bare CR in a command line is a
      syntax error (RFC 5321 §2.3.8).
    * Memory is bounded: an over-long command line is discarded up to its LF
      without being buffered; message bytes are emitted incrementally as
      ``MessageChunk`` (at most ``DATA_CHUNK_SIZE`` per event, never the whole
      message); after the size limit is exceeded, message bytes are counted and
      dropped until the end marker / last BDAT chunk.
    * The caller bounds the input buffer: ``bytes_buffered()`` tells how much
      unparsed input is held; the adapter stops reading while it is large.
    * After a 220 reply to STARTTLS every byte already buffered or received before
      ``start_tls_done()`` is discarded and counted in
      ``pending_plaintext_discarded`` (RFC 3207 §5, CVE-2011-0411); after
      ``start_tls_done()`` the session is back to pre-EHLO (RFC 3207 §4.2).

Decisions
    * Line limits: ``max_line`` (default 512, RFC 5321 §4.5.3.1.4, incl. CRLF)
      applies to every command except ``MAIL``, ``RCPT`` and ``AUTH`` and SASL
      response lines, which may reach ``max_extended_line`` (default 4096):
      RFC 5321 §4.5.3.1.4 lets extensions raise the limit, RFC 1869 §4.1.2 /
      RFC 3461 §5 add parameter space to MAIL/RCPT, and SASL initial responses
      (RFC 4954 §4) are long.  Over-long → ``500 5.5.2``.
    * ``MAIL FROM: <a@b>`` (space after the colon, as Postfix tolerates) and bare
      ``MAIL FROM:a@b`` (Postfix ``strict_rfc821_envelopes = no``) are accepted;
      the same path grammar and relay checks apply to both.
    * Every 4xx/5xx reply passed to ``send()`` counts as an error; once
      ``max_errors`` are reached, the next ``next_event()`` returns
      ``TooManyErrors`` (421 4.7.0) and the adapter closes.
    * With ``forbid_unauth_pipelining`` (Postfix ≥ 3.9 ``smtpd_forbid_unauth_pipelining``),
      a command followed by more input before PIPELINING is in effect — before a positive
      EHLO reply, or after HELO — or input after EHLO itself (RFC 2920 §3.1: EHLO ends a
      group) returns ``PipeliningViolation`` (``554 5.5.0``) and the adapter closes.
      PIPELINING after the EHLO reply (RFC 2920 §3.1) is unaffected.
    * ``SIZE=`` above ``max_message_size`` is refused by the core with
      ``552 5.3.4`` (RFC 1870 §6.1); a message growing past it ends with
      ``MessageEnd(too_big=True)`` and the adapter answers ``REPLY_TOO_BIG``.
    * BDAT in a bad sequence: its chunk is still read and dropped, then
      ``503 5.5.1`` (RFC 3030 §2: the chunk is always consumed).

Why hand-written
    ``smtpd``/``aiosmtpd`` tie parsing to asyncio, accept non-CRLF end-of-data
    variants and have no CHUNKING or DSN parameter handling; no maintained
    Python library provides a sans-IO SMTP core with BDAT, DSN, SMTPUTF8 and the
    smuggling rules (DESIGN.md convention 6).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass

from mailhouse.proto.events import NEED_DATA, NeedData  # the one sentinel of every core, re-exported
from mailhouse.proto.smtp_address import Address, parse_path

__all__ = [
    "MAX_COMMAND_LINE",
    "MAX_EXTENDED_LINE",
    "MAX_ERRORS",
    "DATA_CHUNK_SIZE",
    "NEED_DATA",
    "NeedData",
    "LocalProtocolError",
    "Reply",
    "Phase",
    "Helo",
    "Mail",
    "Rcpt",
    "Data",
    "MessageChunk",
    "MessageEnd",
    "Bdat",
    "BdatChunkEnd",
    "Rset",
    "Noop",
    "Quit",
    "Vrfy",
    "Help",
    "StartTLS",
    "Auth",
    "AuthResponse",
    "CommandError",
    "TooManyErrors",
    "PipeliningViolation",
    "Event",
    "SMTPServerProtocol",
    "sanitize_for_header",
    "xtext_decode",
    "xtext_encode",
    "REPLY_LINE_TOO_LONG",
    "REPLY_BARE_LF",
    "REPLY_BAD_SYNTAX",
    "REPLY_UNKNOWN",
    "REPLY_NOT_IMPLEMENTED",
    "REPLY_TOO_MANY_ERRORS",
    "REPLY_TOO_BIG",
    "REPLY_BARE_NEWLINE",
    "REPLY_BAD_SENDER",
    "REPLY_BAD_RECIPIENT",
    "REPLY_NEED_SMTPUTF8",
    "REPLY_AUTH_LINE_TOO_LONG",
    "REPLY_START_DATA",
    "REPLY_READY_TLS",
    "REPLY_BYE",
]

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
MAX_COMMAND_LINE = 512
# RFC 5321 §4.5.3.1.4 lets extensions raise the limit; RFC 1869 §4.1.2 and RFC 3461 §5
# add MAIL/RCPT parameter space, RFC 4954 §4 SASL responses are long: 4096 covers them all.
MAX_EXTENDED_LINE = 4096
# Postfix smtpd_hard_error_limit default is 20.
MAX_ERRORS = 20
# Largest MessageChunk payload: keeps per-event memory bounded.
DATA_CHUNK_SIZE = 64 * 1024
# RFC 1870 §3: size-value ::= 1*20DIGIT
MAX_SIZE_DIGITS = 20
# RFC 3461 §4.4: ENVID is at most 100 characters.
MAX_ENVID = 100
# RFC 4422 §3.1: sasl-mech = 1*20mech-char
MAX_SASL_MECH = 20
# sanitize_for_header: longest text copied into a header or a log line.
MAX_HEADER_TEXT = 255

_DOT = 0x2E
_CRLF_DOT_CRLF_TAIL = b".\r\n"
_END_OF_DATA = b"\r\n.\r\n"  # RFC 5321 §4.1.1.4
_LINE_DOT = b"\r\n."  # a line starting with a period: stuffed (RFC 5321 §4.5.2) or the end marker


class LocalProtocolError(RuntimeError):
    """The caller broke the sans-IO contract (e.g. next_event() with a reply owed)."""


class Phase(enum.Enum):
    INITIAL = "initial"  # before HELO/EHLO, and again after STARTTLS (RFC 3207 §4.2)
    READY = "ready"  # greeted, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one RCPT accepted
    CLOSED = "closed"  # QUIT answered or 421 sent


class _Reader(enum.Enum):
    COMMAND = "command"
    AUTH = "auth"  # next line is a SASL response (RFC 4954 §4)
    DATA = "data"
    BDAT = "bdat"
    DISCARD_LINE = "discard-line"  # dropping the rest of an over-long line
    TLS_WAIT = "tls-wait"  # 220 sent for STARTTLS, waiting for start_tls_done()
    CLOSED = "closed"


_REPLY_UNSAFE = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply; ``text`` may be several lines (serialised ``250-``/``250 ``)."""

    code: int
    enhanced: str | None = None
    text: str | list[str] = ""

    @property
    def lines(self) -> list[str]:
        if isinstance(self.text, str):
            return [self.text]
        return list(self.text) or [""]

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    def to_bytes(self) -> bytes:
        lines = self.lines
        out: list[str] = []
        for n, line in enumerate(lines):
            sep = " " if n == len(lines) - 1 else "-"
            # A reply line never carries CR/LF from caller-supplied text (reply injection).
            text = _REPLY_UNSAFE.sub(" ", line)
            if self.enhanced:
                text = f"{self.enhanced} {text}" if text else self.enhanced  # RFC 2034 §4: on every line
            if sep == " " and not text:
                out.append(f"{self.code}\r\n")
            else:
                out.append(f"{self.code}{sep}{text}\r\n")
        return "".join(out).encode("utf-8")

    @classmethod
    def ok(cls, text: str = "Ok", enhanced: str | None = "2.0.0") -> Reply:
        return cls(250, enhanced, text)


REPLY_LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
REPLY_BARE_LF = Reply(500, "5.5.2", "Error: bare <LF> received; lines must end with <CR><LF>")
REPLY_BAD_SYNTAX = Reply(500, "5.5.2", "Error: bad syntax")
REPLY_UNKNOWN = Reply(500, "5.5.2", "Error: command not recognized")
REPLY_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Error: command not implemented")
REPLY_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Error: too many errors")
#: Postfix ≥ 3.9 ``smtpd_forbid_unauth_pipelining``: input pipelined before PIPELINING applies.
REPLY_PIPELINING_VIOLATION = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")
REPLY_TOO_BIG = Reply(552, "5.3.4", "Error: message file too big")
REPLY_BARE_NEWLINE = Reply(550, "5.6.2", "Error: bare <CR> or <LF> in message; lines must end with <CR><LF>")
REPLY_BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
REPLY_BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
REPLY_NEED_SMTPUTF8 = Reply(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8")
REPLY_AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")
REPLY_START_DATA = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
REPLY_READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
REPLY_BYE = Reply(221, "2.0.0", "Bye")


def _syntax(usage: str) -> Reply:
    return Reply(501, "5.5.4", f"Syntax: {usage}")


def _bad_sequence(text: str) -> Reply:
    # RFC 5321 §4.1.4 / §3.3: commands out of order get 503
    return Reply(503, "5.5.1", f"Error: {text}")


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Helo:
    name: bytes
    extended: bool


@dataclass(frozen=True, slots=True)
class Mail:
    address: bytes  # mailbox without <> and without source route; b"" for the null sender
    params: dict[str, str | None]  # upper-cased keywords; xtext values decoded
    path: Address | None = None  # parsed path; None for the null sender


@dataclass(frozen=True, slots=True)
class Rcpt:
    address: bytes
    params: dict[str, str | None]
    path: Address | None = None


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class MessageChunk:
    data: bytes  # un-dot-stuffed message bytes (DATA) or raw chunk bytes (BDAT)
    #: DATA: every line ending in DATA is CRLF and no chunk ends inside one, unless the
    #: `MessageEnd` says ``bare_newline`` (then the message is refused anyway), so the consumer
    #: need not normalise line endings. BDAT (RFC 3030 §2: raw octets): False.
    crlf: bool = False


@dataclass(frozen=True, slots=True)
class MessageEnd:
    size: int  # message octets counted (also past the limit)
    too_big: bool  # size > max_message_size: answer REPLY_TOO_BIG
    bare_newline: bool = False  # DATA only: bare CR/LF seen: answer REPLY_BARE_NEWLINE


@dataclass(frozen=True, slots=True)
class Bdat:
    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class BdatChunkEnd:
    """A non-LAST BDAT chunk has been read completely; answer 250 (or an error)."""

    size: int
    too_big: bool


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    arg: bytes


@dataclass(frozen=True, slots=True)
class Help:
    arg: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str  # upper-cased
    initial: bytes | None  # raw base64 text as sent ("=" means empty), not decoded


@dataclass(frozen=True, slots=True)
class AuthResponse:
    line: bytes  # raw line without CRLF ("*" means cancel, RFC 4954 §4)


@dataclass(frozen=True, slots=True)
class CommandError:
    reply: Reply  # the core's answer: the adapter sends exactly this


@dataclass(frozen=True, slots=True)
class TooManyErrors:
    reply: Reply  # send it, then close the connection


@dataclass(frozen=True, slots=True)
class PipeliningViolation:
    reply: Reply  # 554 5.5.0: send it, then close the connection (the core is closed already)
    command: bytes  # the command the unexpected input followed (for the log)


Event = (
    Helo
    | Mail
    | Rcpt
    | Data
    | MessageChunk
    | MessageEnd
    | Bdat
    | BdatChunkEnd
    | Rset
    | Noop
    | Quit
    | Vrfy
    | Help
    | StartTLS
    | Auth
    | AuthResponse
    | CommandError
    | TooManyErrors
    | PipeliningViolation
)

# ---------------------------------------------------------------- helpers

_ESMTP_KEYWORD = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*")  # RFC 5321 §4.1.2 esmtp-keyword
_SASL_MECH = re.compile(rb"[A-Za-z0-9_-]{1,%d}" % MAX_SASL_MECH)  # RFC 4422 §3.1
_BASE64_OR_EQ = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")  # RFC 4954 §4 initial-response
_HEX_UPPER = frozenset(b"0123456789ABCDEF")


def xtext_decode(value: bytes) -> bytes | None:
    """RFC 3461 §4: xtext = *( xchar / hexchar ); hexchar = "+" 2HEXDIGIT (upper case)."""
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c == 0x2B:  # "+"
            pair = value[i + 1 : i + 3]
            if len(pair) != 2 or any(b not in _HEX_UPPER for b in pair):
                return None
            out.append(int(pair, 16))
            i += 3
            continue
        if c < 33 or c > 126 or c == 0x3D:  # xchar excludes "=" and "+"
            return None
        out.append(c)
        i += 1
    return bytes(out)


def xtext_encode(value: bytes) -> bytes:
    """RFC 3461 §4: encode everything outside xchar as +XX."""
    return b"".join(bytes([b]) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else b"+%02X" % b for b in value)


def sanitize_for_header(raw: bytes, limit: int = MAX_HEADER_TEXT) -> str:
    """Make client-supplied bytes safe for a Received header or a log line.

    Valid UTF-8 printable text is kept; CR, LF, other C0/C1 controls, DEL, invalid
    UTF-8 and backslash are written as ``\\xNN`` / ``\\\\`` escapes, so the result
    never contains a line break or a control character.  Truncated at *limit*
    characters (marked with "...").
    """
    text = raw.decode("utf-8", errors="surrogateescape")
    out: list[str] = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F or 0x80 <= o <= 0x9F or o in (0x2028, 0x2029):
            out.append(f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}")
        else:
            out.append(ch)
    result = "".join(out)
    if len(result) > limit:
        result = result[:limit] + "..."
    return result


def _split_path(arg: bytes) -> tuple[bytes, bytes] | None:
    """Split ``<path> params`` (or a bare ``path params``); honours quoted local parts."""
    s = arg.lstrip(b" ")  # Postfix tolerance: "MAIL FROM: <a@b>"
    if s.startswith(b"<"):
        i = 1
        in_quote = False
        while i < len(s):
            c = s[i]
            if in_quote:
                if c == 0x5C:  # backslash: quoted-pair
                    i += 2
                    continue
                if c == 0x22:
                    in_quote = False
            elif c == 0x22:
                in_quote = True
            elif c == 0x3E:  # ">"
                return s[: i + 1], s[i + 1 :]
            elif c == 0x3C:
                return None
            i += 1
        return None
    # Bare path without brackets (Postfix strict_rfc821_envelopes = no).
    path, sp, rest = s.partition(b" ")
    if not path:
        return None
    return path, sp + rest


class SMTPServerProtocol:
    """Sans-IO SMTP server core; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        max_message_size: int,
        max_line: int = MAX_COMMAND_LINE,
        max_extended_line: int = MAX_EXTENDED_LINE,
        max_errors: int = MAX_ERRORS,
        forbid_unauth_pipelining: bool = False,
    ) -> None:
        self.max_line = max_line
        self.forbid_unauth_pipelining = forbid_unauth_pipelining
        self.max_extended_line = max(max_line, max_extended_line)
        self.max_message_size = max_message_size
        self.max_errors = max_errors
        self._buf = bytearray()
        self._reader = _Reader.COMMAND
        self._events: deque[Event] = deque()
        self._awaiting: Event | None = None
        self._errors = 0
        # session state
        self.phase = Phase.INITIAL
        self.helo_name: bytes | None = None
        self.extended = False
        self.tls_active = False
        self.authenticated = False
        self.greeted = False
        self.spoke_before_greeting = False
        self.pending_plaintext_discarded = 0
        # transaction state
        self._rcpts = 0
        self._bdat_used = False
        self._smtputf8 = False
        self._body: str | None = None
        # message reader state
        self._msg_size = 0
        self._msg_too_big = False
        self._msg_bare = False
        self._d_bol = True
        self._bdat_remaining = 0
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_discard = False

    # ------------------------------------------------------------ public API

    @property
    def errors(self) -> int:
        return self._errors

    @property
    def closed(self) -> bool:
        return self._reader is _Reader.CLOSED

    @property
    def in_message(self) -> bool:
        return self._reader in (_Reader.DATA, _Reader.BDAT)

    @property
    def transaction_recipients(self) -> int:
        return self._rcpts

    def greeting(self, hostname: str, text: str = "ESMTP") -> bytes:
        """The 220 banner; afterwards ``spoke_before_greeting`` tells if the client talked first."""
        self.greeted = True
        return Reply(220, None, f"{sanitize_for_header(hostname.encode())} {text}".strip()).to_bytes()

    def bytes_buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        if not data:
            return
        if not self.greeted:
            self.spoke_before_greeting = True
        if self._reader is _Reader.CLOSED:
            return
        if self._reader is _Reader.TLS_WAIT:
            # RFC 3207 §5 / CVE-2011-0411: plaintext after STARTTLS is never executed
            self.pending_plaintext_discarded += len(data)
            return
        if self._reader is _Reader.DISCARD_LINE:
            # Rest of an over-long line: dropped without buffering (bounded memory).
            j = data.find(b"\n")
            if j < 0:
                return
            data = data[j + 1 :]
            self._reader = _Reader.COMMAND
        self._buf += data

    def next_event(self) -> Event | NeedData:
        if self._awaiting is not None:
            raise LocalProtocolError(f"send() a reply to {self._awaiting!r} first")
        event = self._next_event()
        if event is not NEED_DATA and not isinstance(event, MessageChunk | Bdat):
            self._awaiting = event
        return event

    def send(self, reply: Reply) -> bytes:
        """Serialise *reply* (the answer to the last event) and apply its state change."""
        event, self._awaiting = self._awaiting, None
        data = reply.to_bytes()
        if reply.is_error:
            self._errors += 1
        if reply.code == 421 or (isinstance(event, Quit) and reply.code == 221):
            self._close()  # RFC 5321 §3.8 / §4.1.1.10
            return data
        positive = 200 <= reply.code < 300
        if isinstance(event, Helo) and positive:
            self.phase = Phase.READY  # RFC 5321 §4.1.4: EHLO/HELO reset the transaction
            self._reset_transaction()
            self.helo_name = event.name
            self.extended = event.extended
        elif isinstance(event, Mail) and positive:
            self.phase = Phase.MAIL
            self._smtputf8 = "SMTPUTF8" in event.params
            self._body = event.params.get("BODY")
        elif isinstance(event, Rcpt) and positive:
            self.phase = Phase.RCPT
            self._rcpts += 1
        elif isinstance(event, Data) and reply.code == 354:
            self._start_message()
            self._reader = _Reader.DATA
        elif isinstance(event, Rset) and positive:
            self._reset_transaction()  # RFC 5321 §4.1.1.5
        elif isinstance(event, BdatChunkEnd) and not positive:
            self._reset_transaction()  # RFC 3030 §2: a failed chunk fails the transaction
        elif isinstance(event, StartTLS) and reply.code == 220:
            # RFC 3207 §5 / CVE-2011-0411: drop plaintext pipelined after STARTTLS
            self.pending_plaintext_discarded += len(self._buf)
            self._buf.clear()
            self._reader = _Reader.TLS_WAIT
        elif isinstance(event, Auth | AuthResponse):
            if reply.code == 334:
                self._reader = _Reader.AUTH  # RFC 4954 §4: continuation
            else:
                self._reader = _Reader.COMMAND
                if reply.code == 235:
                    self.authenticated = True
        elif isinstance(event, CommandError) and self._reader is _Reader.AUTH:
            self._reader = _Reader.COMMAND
        return data

    def start_tls_done(self) -> None:
        """The adapter finished the TLS handshake: RFC 3207 §4.2, forget everything."""
        self.pending_plaintext_discarded += len(self._buf)
        self._buf.clear()
        self._events.clear()
        self._awaiting = None
        self._reader = _Reader.COMMAND
        self.phase = Phase.INITIAL
        self.helo_name = None
        self.extended = False
        self.authenticated = False
        self.tls_active = True
        self._reset_transaction()

    # ------------------------------------------------------------ internals

    def _close(self) -> None:
        self._reader = _Reader.CLOSED
        self.phase = Phase.CLOSED
        self._buf.clear()
        self._events.clear()

    def _reset_transaction(self) -> None:
        if self.phase in (Phase.MAIL, Phase.RCPT):
            self.phase = Phase.READY
        self._rcpts = 0
        self._bdat_used = False
        self._smtputf8 = False
        self._body = None
        self._start_message()

    def _start_message(self) -> None:
        self._msg_size = 0
        self._msg_too_big = False
        self._msg_bare = False
        self._d_bol = True  # the CRLF of the DATA line counts as the first CRLF

    def _error(self, reply: Reply) -> CommandError:
        return CommandError(reply)

    def _next_event(self) -> Event | NeedData:
        if self._events:
            return self._events.popleft()
        reader = self._reader
        if reader in (_Reader.CLOSED, _Reader.TLS_WAIT, _Reader.DISCARD_LINE):
            return NEED_DATA
        if reader is _Reader.DATA:
            return self._read_data()
        if reader is _Reader.BDAT:
            return self._read_bdat()
        if reader is _Reader.COMMAND and self._errors >= self.max_errors:
            self._close()
            self._reader = _Reader.CLOSED
            return TooManyErrors(REPLY_TOO_MANY_ERRORS)
        line = self._take_line()
        if line is None:
            return NEED_DATA
        if isinstance(line, CommandError):
            return line
        if reader is _Reader.AUTH:
            return AuthResponse(line)
        if self.forbid_unauth_pipelining and self._buf and self._unauth_pipelining(line):
            self._close()
            return PipeliningViolation(REPLY_PIPELINING_VIOLATION, line[:64])
        return self._parse_command(line)

    def _unauth_pipelining(self, line: bytes) -> bool:
        """More input follows LINE where RFC 2920 allows none (Postfix smtpd_forbid_unauth_pipelining)."""
        if self.phase is Phase.INITIAL or not self.extended:
            return True  # RFC 2920 §3.1: PIPELINING applies only after it was offered in the EHLO reply
        verb = line.split(b" ", 1)[0].upper()
        return verb in (b"EHLO", b"HELO")  # RFC 2920 §3.1: EHLO may only end a group

    def _take_line(self) -> bytes | CommandError | None:
        buf = self._buf
        limit = self.max_extended_line
        i = buf.find(b"\n", 0, limit)
        if i < 0:
            if len(buf) < limit:
                return None
            # RFC 5321 §4.5.3.1.4: too long; drop what we have and the rest up to LF
            in_auth = self._reader is _Reader.AUTH
            j = buf.find(b"\n")
            if j < 0:
                buf.clear()
                self._reader = _Reader.DISCARD_LINE
            else:
                del buf[: j + 1]
            if in_auth:
                return CommandError(REPLY_AUTH_LINE_TOO_LONG)  # RFC 4954 §4
            return CommandError(REPLY_LINE_TOO_LONG)
        line = bytes(buf[: i + 1])
        del buf[: i + 1]
        if not line.endswith(b"\r\n"):
            return CommandError(REPLY_BARE_LF)  # RFC 5321 §2.3.8: lines end in CRLF only
        line = line[:-2]
        if b"\r" in line:
            return CommandError(REPLY_BAD_SYNTAX)  # RFC 5321 §2.3.8: no bare CR
        return line

    # ------------------------------------------------------------ commands

    def _parse_command(self, line: bytes) -> Event | NeedData:
        verb_b, _, rest = line.partition(b" ")
        if not verb_b:
            return CommandError(REPLY_BAD_SYNTAX)
        if not verb_b.isalpha():
            return CommandError(REPLY_UNKNOWN)
        verb = verb_b.decode("ascii").upper()  # RFC 5321 §2.4: verbs are case-insensitive
        if verb not in ("MAIL", "RCPT", "AUTH") and len(line) + 2 > self.max_line:
            return CommandError(REPLY_LINE_TOO_LONG)  # RFC 5321 §4.5.3.1.4
        handler = _COMMANDS.get(verb)
        if handler is None:
            return CommandError(REPLY_UNKNOWN)  # RFC 5321 §4.2.4
        return handler(self, rest)

    def _cmd_helo(self, rest: bytes, extended: bool) -> Event:
        name = rest.strip(b" ")
        if not name:
            return CommandError(_syntax("EHLO hostname" if extended else "HELO hostname"))
        return Helo(name, extended)

    def _cmd_ehlo(self, rest: bytes) -> Event:
        return self._cmd_helo(rest, True)

    def _cmd_helo_plain(self, rest: bytes) -> Event:
        return self._cmd_helo(rest, False)

    def _split_mail_rcpt(self, rest: bytes, keyword: bytes) -> tuple[bytes, list[bytes]] | None:
        if rest[: len(keyword)].upper() != keyword:
            return None
        split = _split_path(rest[len(keyword) :])
        if split is None:
            return None
        path, after = split
        after = after.rstrip(b" ")
        if after and not after.startswith(b" "):
            return None  # RFC 5321 §4.1.2: SP between path and parameters
        return path, [t for t in after.split(b" ") if t]

    def _cmd_mail(self, rest: bytes) -> Event:
        usage = "MAIL FROM:<address>"
        if self.phase is Phase.INITIAL:
            return CommandError(_bad_sequence("send HELO/EHLO first"))
        if self.phase in (Phase.MAIL, Phase.RCPT):
            return CommandError(_bad_sequence("nested MAIL command"))  # RFC 5321 §4.1.4
        split = self._split_mail_rcpt(rest, b"FROM:")  # RFC 5321 §4.1.1.2
        if split is None:
            return CommandError(_syntax(usage))
        raw_path, tokens = split
        smtputf8 = any(t.upper() == b"SMTPUTF8" for t in tokens)  # RFC 6531 §3.4
        params = self._parse_params(tokens, _MAIL_PARAMS, smtputf8)
        if isinstance(params, Reply):
            return CommandError(params)
        if raw_path == b"<>":
            return Mail(b"", params, None)  # RFC 5321 §4.5.5: null reverse-path
        path = self._parse_address(raw_path, smtputf8, REPLY_BAD_SENDER)
        if isinstance(path, Reply):
            return CommandError(path)
        if not path.domain:
            return CommandError(REPLY_BAD_SENDER)
        return Mail(_mailbox_bytes(path), params, path)

    def _cmd_rcpt(self, rest: bytes) -> Event:
        usage = "RCPT TO:<address>"
        if self.phase not in (Phase.MAIL, Phase.RCPT):
            return CommandError(_bad_sequence("need MAIL command"))  # RFC 5321 §4.1.4
        split = self._split_mail_rcpt(rest, b"TO:")  # RFC 5321 §4.1.1.3
        if split is None:
            return CommandError(_syntax(usage))
        raw_path, tokens = split
        params = self._parse_params(tokens, _RCPT_PARAMS, self._smtputf8)
        if isinstance(params, Reply):
            return CommandError(params)
        path = self._parse_address(raw_path, self._smtputf8, REPLY_BAD_RECIPIENT)
        if isinstance(path, Reply):
            return CommandError(path)
        return Rcpt(_mailbox_bytes(path), params, path)

    def _parse_address(self, raw: bytes, smtputf8: bool, bad: Reply) -> Address | Reply:
        path = parse_path(raw, smtputf8=smtputf8)
        if path is not None:
            return path
        if not smtputf8 and any(b >= 0x80 for b in raw) and parse_path(raw, smtputf8=True) is not None:
            return REPLY_NEED_SMTPUTF8  # RFC 6531 §3.3: UTF-8 addresses need SMTPUTF8
        return bad

    def _parse_params(
        self, tokens: list[bytes], allowed: frozenset[str], smtputf8: bool
    ) -> dict[str, str | None] | Reply:
        # RFC 5321 §4.1.2: esmtp-param = esmtp-keyword ["=" esmtp-value]
        params: dict[str, str | None] = {}
        for tok in tokens:
            key_b, eq, val_b = tok.partition(b"=")
            if not _ESMTP_KEYWORD.fullmatch(key_b):
                return Reply(501, "5.5.4", "Error: bad parameter syntax")
            key = key_b.decode("ascii").upper()
            if key in params:
                return Reply(501, "5.5.4", f"Error: duplicate parameter {key}")
            value: str | None = None
            if eq:
                # esmtp-value = 1*(%d33-60 / %d62-126); RFC 6531 §3.3 adds UTF-8 with SMTPUTF8
                if not val_b or any(
                    b < 33 or b in (0x3D, 0x7F) or (b >= 0x80 and not smtputf8) for b in val_b
                ):
                    return Reply(501, "5.5.4", f"Error: bad {key} parameter value")
                try:
                    value = val_b.decode("utf-8")
                except UnicodeDecodeError:
                    return Reply(501, "5.5.4", f"Error: bad {key} parameter value")
            if key not in allowed:
                return Reply(555, "5.5.4", f"Error: unsupported parameter {key}")  # RFC 5321 §4.1.1.11
            checked = self._check_param(key, value)
            if isinstance(checked, Reply):
                return checked
            params[key] = checked
        return params

    def _check_param(self, key: str, value: str | None) -> str | None | Reply:
        bad = Reply(501, "5.5.4", f"Error: bad {key} parameter value")
        if key == "SMTPUTF8":
            return bad if value is not None else None  # RFC 6531 §3.4: no value
        if key == "REQUIRETLS":
            return bad if value is not None else None  # RFC 8689 §4: a keyword without value
        if value is None:
            return bad
        if key == "SIZE":
            # RFC 1870 §3: size-value ::= 1*20DIGIT
            if not (value.isascii() and value.isdigit()) or len(value) > MAX_SIZE_DIGITS:
                return bad
            if int(value) > self.max_message_size:
                return Reply(552, "5.3.4", "Error: message size exceeds fixed limit")  # RFC 1870 §6.1
            return value
        if key == "BODY":
            upper = value.upper()
            # RFC 6152 §2 (8BITMIME), RFC 3030 §3 (BINARYMIME)
            return upper if upper in ("7BIT", "8BITMIME", "BINARYMIME") else bad
        if key == "RET":
            upper = value.upper()
            return upper if upper in ("FULL", "HDRS") else bad  # RFC 3461 §4.3
        if key == "NOTIFY":
            # RFC 3461 §4.1: "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )
            items = value.upper().split(",")
            if items == ["NEVER"]:
                return "NEVER"
            if not items or any(i not in ("SUCCESS", "FAILURE", "DELAY") for i in items):
                return bad
            return ",".join(items)
        if key == "ENVID":
            if len(value) > MAX_ENVID:  # RFC 3461 §4.4
                return bad
            return _xtext_str(value, bad)
        if key == "AUTH":
            return _xtext_str(value, bad)  # RFC 4954 §5: AUTH=<xtext mailbox> or <>
        if key == "ORCPT":
            # RFC 3461 §4.2: addr-type ";" xtext
            addr_type, semi, orig = value.partition(";")
            if not semi or not addr_type or not orig:
                return bad
            decoded = _xtext_str(orig, bad)
            if isinstance(decoded, Reply) or decoded is None:
                return bad
            return f"{addr_type.lower()};{decoded}"
        return value

    def _cmd_data(self, rest: bytes) -> Event:
        if rest.strip(b" "):
            return CommandError(_syntax("DATA"))
        if self.phase is Phase.MAIL:
            return CommandError(_bad_sequence("need RCPT command"))
        if self.phase is not Phase.RCPT:
            return CommandError(_bad_sequence("need MAIL command"))
        if self._bdat_used:
            return CommandError(_bad_sequence("DATA after BDAT"))  # RFC 3030 §2
        if self._body == "BINARYMIME":
            return CommandError(_bad_sequence("BODY=BINARYMIME requires BDAT"))  # RFC 3030 §3
        return Data()

    def _cmd_bdat(self, rest: bytes) -> Event | NeedData:
        # RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]
        args = rest.split(b" ")
        if (
            not 1 <= len(args) <= 2
            or not args[0].isdigit()
            or len(args[0]) > MAX_SIZE_DIGITS
            or (len(args) == 2 and args[1].upper() != b"LAST")
        ):
            return CommandError(_syntax("BDAT size [LAST]"))
        size = int(args[0])
        last = len(args) == 2
        self._bdat_remaining = size
        self._bdat_size = size
        self._bdat_last = last
        self._reader = _Reader.BDAT
        if self.phase is not Phase.RCPT:
            # RFC 3030 §2: the chunk is consumed even when the command fails
            self._bdat_discard = True
            return self._read_bdat()
        self._bdat_discard = False
        if not self._bdat_used:
            self._start_message()
            self._bdat_used = True
        return Bdat(size, last)

    def _cmd_rset(self, rest: bytes) -> Event:
        if rest.strip(b" "):
            return CommandError(_syntax("RSET"))
        return Rset()

    def _cmd_noop(self, rest: bytes) -> Event:
        return Noop()  # RFC 5321 §4.1.1.9: any parameter is ignored

    def _cmd_quit(self, rest: bytes) -> Event:
        return Quit()

    def _cmd_vrfy(self, rest: bytes) -> Event:
        arg = rest.strip(b" ")
        if not arg:
            return CommandError(_syntax("VRFY address"))
        return Vrfy(arg)

    def _cmd_help(self, rest: bytes) -> Event:
        return Help(rest.strip(b" "))

    def _cmd_expn(self, rest: bytes) -> Event:
        return CommandError(REPLY_NOT_IMPLEMENTED)  # RFC 5321 §3.5.2: EXPN is optional

    def _cmd_starttls(self, rest: bytes) -> Event:
        if rest.strip(b" "):
            return CommandError(_syntax("STARTTLS"))  # RFC 3207 §4: no parameters
        if self.tls_active:
            return CommandError(_bad_sequence("TLS already active"))
        if self.phase is Phase.INITIAL:
            return CommandError(_bad_sequence("send EHLO first"))
        if self.phase in (Phase.MAIL, Phase.RCPT):
            return CommandError(_bad_sequence("MAIL transaction in progress"))
        return StartTLS()

    def _cmd_auth(self, rest: bytes) -> Event:
        if self.phase is Phase.INITIAL or not self.extended:
            return CommandError(_bad_sequence("send EHLO first"))
        if self.authenticated:
            return CommandError(_bad_sequence("already authenticated"))  # RFC 4954 §4
        if self.phase in (Phase.MAIL, Phase.RCPT):
            return CommandError(_bad_sequence("MAIL transaction in progress"))  # RFC 4954 §4
        args = rest.split(b" ")
        if not 1 <= len(args) <= 2 or not _SASL_MECH.fullmatch(args[0]):
            return CommandError(_syntax("AUTH mechanism [initial-response]"))
        initial: bytes | None = None
        if len(args) == 2:
            if not _BASE64_OR_EQ.fullmatch(args[1]):
                return CommandError(Reply(501, "5.5.2", "Error: cannot decode initial response"))
            initial = args[1]
        return Auth(args[0].decode("ascii").upper(), initial)

    # ------------------------------------------------------------ message readers

    def _account(self, seg: bytes, crlf: bool) -> None:
        """Message octets: counted, cut at the size limit, emitted without another copy."""
        self._msg_size += len(seg)
        if self._msg_too_big:
            return  # past the limit: count and drop (bounded memory)
        over = self._msg_size - self.max_message_size
        if over > 0:
            self._msg_too_big = True
            seg = seg[: len(seg) - over]
        if seg:
            self._events.append(MessageChunk(seg, crlf))

    def _finish_message(self, bare: bool) -> MessageEnd:
        end = MessageEnd(self._msg_size, self._msg_too_big, bare)
        self._reader = _Reader.COMMAND
        self._reset_transaction()  # message state reset after MessageEnd
        return end

    def _read_data(self) -> Event | NeedData:
        """DATA text up to <CRLF>.<CRLF>, dot-unstuffed, in bulk: a few bytes methods per chunk of
        up to `DATA_CHUNK_SIZE`, not a Python step per line (a 48 MB message is ~600,000 lines, and
        this runs on the event loop). A chunk border never splits the end marker or a stuffed
        dot: the text before a line start goes out, what may begin a marker waits."""
        while not self._events and self._reader is _Reader.DATA and self._data_step():
            pass  # a window past the size limit emits nothing: go on while the buffer moves
        return self._events.popleft() if self._events else NEED_DATA

    def _data_step(self) -> bool:
        """One window of the buffer; False when nothing could be consumed (more data needed)."""
        buf = self._buf
        if self._d_bol:  # the first line of the text (the DATA line's CRLF counts as its start)
            if len(buf) < 3 and _CRLF_DOT_CRLF_TAIL.startswith(bytes(buf)):
                return False  # "", "." or ".\r": the end marker, a stuffed dot or text?
            self._d_bol = False
            if buf.startswith(_CRLF_DOT_CRLF_TAIL):  # RFC 5321 §4.1.1.4: an empty message
                del buf[:3]
                self._events.append(self._finish_message(self._msg_bare))
                return True
            if buf[0] == _DOT:
                del buf[:1]  # RFC 5321 §4.5.2: delete the leading period
        n = len(buf)
        limit = min(n, max(DATA_CHUNK_SIZE, 2 * len(_END_OF_DATA)))  # a held-back tail leaves some text
        window = min(n, limit + len(_END_OF_DATA) - 1)
        # One pass finds the first line starting with a period: without one there is neither an
        # end marker nor a stuffed dot in the window (most windows), so nothing else is searched.
        dot = buf.find(_LINE_DOT, 0, window)
        end = -1 if dot < 0 else buf.find(_END_OF_DATA, dot, window)
        if end >= 0:
            take, consume = end + 2, end + len(_END_OF_DATA)  # the text keeps its last CRLF
        else:
            take = limit
            # a chunk border inside a possible marker: the text up to a CRLF goes now (the next
            # round starts at a line start: `_d_bol`), a lone CR waits for what follows it
            if take >= 4 and buf[take - 4 : take] == b"\r\n.\r":
                take, self._d_bol = take - 2, True
            elif take >= 3 and buf[take - 3 : take] == b"\r\n.":
                take, self._d_bol = take - 1, True
            elif take >= 2 and buf[take - 2 : take] == b"\r\n":
                self._d_bol = True
            elif take >= 1 and buf[take - 1] == 0x0D:
                take -= 1
            consume = take
        if take:
            with memoryview(buf) as view:  # one copy (released before the buffer shrinks)
                seg = bytes(view[:take])
            if not self._msg_bare:  # (once bare, the message is refused: no need to look again)
                # Smuggling defence: a line only ends at CRLF; a bare CR or LF marks the message
                crlf = seg.count(b"\r\n")
                if seg.count(b"\r") != crlf or seg.count(b"\n") != crlf:
                    self._msg_bare = True
            if 0 <= dot and dot + len(_LINE_DOT) <= take:
                # RFC 5321 §4.5.2: a period at the start of a line is deleted (no "\r\n."
                # straddles two chunks: see above)
                seg = seg.replace(_LINE_DOT, b"\r\n")
            self._account(seg, True)
        del buf[:consume]
        if end >= 0:
            self._events.append(self._finish_message(self._msg_bare))
        return consume > 0

    def _read_bdat(self) -> Event | NeedData:
        buf = self._buf
        take = min(self._bdat_remaining, len(buf), DATA_CHUNK_SIZE)
        if take:
            with memoryview(buf) as view:
                seg = bytes(view[:take])
            del buf[:take]
            self._bdat_remaining -= take
            if not self._bdat_discard:
                self._account(seg, False)  # RFC 3030 §2: chunk bytes are raw, no dot-stuffing
        if self._bdat_remaining == 0:
            if self._bdat_discard:
                self._bdat_discard = False
                self._reader = _Reader.COMMAND
                self._events.append(CommandError(_bad_sequence("need RCPT command")))
            elif self._bdat_last:
                self._events.append(self._finish_message(False))
            else:
                self._reader = _Reader.COMMAND
                self._events.append(BdatChunkEnd(self._bdat_size, self._msg_too_big))
        return self._events.popleft() if self._events else NEED_DATA


def _mailbox_bytes(path: Address) -> bytes:
    raw = path.raw
    if path.had_source_route:
        raw = raw[raw.index(b":") + 1 :]  # RFC 5321 §C: strip the route
    return raw


def _xtext_str(value: str, bad: Reply) -> str | Reply:
    decoded = xtext_decode(value.encode("utf-8"))
    if decoded is None:
        return bad
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        return bad


_MAIL_PARAMS = frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", "REQUIRETLS"})
_RCPT_PARAMS = frozenset({"NOTIFY", "ORCPT"})

_COMMANDS = {
    "HELO": SMTPServerProtocol._cmd_helo_plain,
    "EHLO": SMTPServerProtocol._cmd_ehlo,
    "MAIL": SMTPServerProtocol._cmd_mail,
    "RCPT": SMTPServerProtocol._cmd_rcpt,
    "DATA": SMTPServerProtocol._cmd_data,
    "BDAT": SMTPServerProtocol._cmd_bdat,
    "RSET": SMTPServerProtocol._cmd_rset,
    "NOOP": SMTPServerProtocol._cmd_noop,
    "QUIT": SMTPServerProtocol._cmd_quit,
    "VRFY": SMTPServerProtocol._cmd_vrfy,
    "HELP": SMTPServerProtocol._cmd_help,
    "EXPN": SMTPServerProtocol._cmd_expn,
    "STARTTLS": SMTPServerProtocol._cmd_starttls,
    "AUTH": SMTPServerProtocol._cmd_auth,
}
