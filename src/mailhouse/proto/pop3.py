"""Sans-IO POP3 server core.

Implements the wire side of RFC 1939 (POP3), RFC 2449 (CAPA, response codes,
line limits, PIPELINING), RFC 5034 (AUTH / SASL), RFC 2595 §4 (STLS),
RFC 3206 (AUTH and SYS response codes) and RFC 6856 (UTF8 command).

Bytes go in with :meth:`POP3ServerProtocol.receive_data`; typed events come
out of :meth:`POP3ServerProtocol.next_event` (or :data:`NEED_DATA`).  Replies
are built with :func:`ok`, :func:`err`, :func:`multiline` and
:func:`dot_stuff_stream`.  The core owns syntax, line limits, the per-state
command gate (RFC 1939 §3, §4-§6) and answers malformed input itself with a
:class:`CommandError` carrying the ``-ERR`` line to send.  It never decides
policy: whether a password is right, whether plaintext login is allowed
before STLS, which messages exist.  The adapter moves the state with
:meth:`authenticated` and :meth:`quit_to_update`.

Invariants
----------
* Only complete lines produce events; a line over the limit is answered with
  one ``-ERR`` and the rest of it is discarded up to LF without buffering.
* After an :class:`Stls` event the core yields nothing until
  :meth:`start_tls_done`, which drops every byte received before the TLS
  handshake (plaintext command injection, CVE-2011-0411 class).
* After a :class:`Quit` event the core yields nothing more.
* ``PASS`` is only accepted directly after ``USER`` (RFC 1939 §7).
* Reply text never contains CR or LF (response injection).

APOP is deliberately not implemented: its challenge-response is
``MD5(timestamp + password)``, which the server can only check if it stores
the plaintext password (or an equivalent).  We store argon2id hashes (and
SCRAM keys), and MD5 is broken anyway; SCRAM-SHA-256 via AUTH is the
challenge-response mechanism we offer.  ``APOP`` is answered ``-ERR``.

Why hand-written: ``poplib`` is client-only and blocking, and no maintained
Python library offers a sans-IO POP3 server with the STLS and line-limit
rules above; the core is small and shares the event style of our SMTP and
IMAP cores.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from .events import NEED_DATA, NeedData  # the one sentinel of every core, re-exported
from .sasl import MAX_ENCODED_RESPONSE_OCTETS, SaslError, decode_initial

__all__ = [
    "MAX_COMMAND_LINE",
    "MAX_MSG_NUMBER",
    "MAX_RESPONSE_LINE",
    "NEED_DATA",
    "Auth",
    "AuthCancelled",
    "AuthResponse",
    "Capa",
    "CommandError",
    "Dele",
    "Event",
    "List",
    "NeedData",
    "Noop",
    "POP3ServerProtocol",
    "Pass",
    "Pop3State",
    "Quit",
    "ResponseCode",
    "Retr",
    "Rset",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "User",
    "Utf8",
    "dot_stuff_crlf",
    "dot_stuff_stream",
    "err",
    "multiline",
    "ok",
]

# Limits ----------------------------------------------------------------------

#: RFC 2449 §4: command lines are at most 255 octets including CRLF.
MAX_COMMAND_LINE: Final = 255
#: RFC 2449 §4: first lines of responses are at most 512 octets including CRLF.
MAX_RESPONSE_LINE: Final = 512
#: SASL continuation lines are client responses, not commands (RFC 5034 §4), so
#: they get the base64 size of the SASL response limit plus CRLF.
MAX_AUTH_LINE: Final = MAX_ENCODED_RESPONSE_OCTETS + 2
#: Largest message number / TOP line count we parse: fits a signed 32-bit
#: column and no real maildrop comes close; bigger values are syntax errors.
MAX_MSG_NUMBER: Final = 2**31 - 1
#: Digits of MAX_MSG_NUMBER; longer numerals are rejected before int().
_MAX_NUMBER_DIGITS: Final = len(str(MAX_MSG_NUMBER))
#: RFC 4422 §3.1: SASL mechanism names are 1..20 characters of [A-Z0-9-_].
MAX_MECHANISM_NAME: Final = 20

CRLF: Final = b"\r\n"


class Pop3State(enum.Enum):
    """RFC 1939 §3 session states."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


class ResponseCode(enum.Enum):
    """Extended response codes (RFC 2449 §8, RFC 3206)."""

    IN_USE = "IN-USE"  # RFC 2449 §8.1.1: maildrop locked by another session
    LOGIN_DELAY = "LOGIN-DELAY"  # RFC 2449 §8.1.2: logging in too often
    SYS_TEMP = "SYS/TEMP"  # RFC 3206 §4: transient system failure
    SYS_PERM = "SYS/PERM"  # RFC 3206 §4: permanent system failure
    AUTH = "AUTH"  # RFC 3206 §5: credentials wrong or not permitted


# Events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """``USER name`` (RFC 1939 §7)."""

    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    """``PASS password``; the rest of the line, spaces included (RFC 1939 §7)."""

    password: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Auth:
    """``AUTH mechanism [initial-response]`` (RFC 5034 §4).

    ``mechanism`` is upper-cased; ``initial`` is the decoded initial response,
    ``b""`` when the client sent ``=``, ``None`` when absent.
    """

    mechanism: str
    initial: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One SASL continuation line (raw base64, CRLF stripped).

    Decoded by the adapter with :func:`mailhouse.proto.sasl.decode_line` so
    SMTP, IMAP and POP3 share one SASL error path.
    """

    line: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthCancelled:
    """The client answered a challenge with ``*`` (RFC 5034 §4)."""


@dataclass(frozen=True, slots=True)
class Capa:
    """``CAPA`` (RFC 2449 §5), valid in every state."""


@dataclass(frozen=True, slots=True)
class Stls:
    """``STLS`` (RFC 2595 §4); answer ``+OK``, handshake, then ``start_tls_done()``."""


@dataclass(frozen=True, slots=True)
class Utf8:
    """``UTF8`` (RFC 6856 §2)."""


@dataclass(frozen=True, slots=True)
class Stat:
    """``STAT`` (RFC 1939 §5)."""


@dataclass(frozen=True, slots=True)
class List:
    """``LIST [msg]`` (RFC 1939 §5)."""

    msg: int | None


@dataclass(frozen=True, slots=True)
class Retr:
    """``RETR msg`` (RFC 1939 §5)."""

    msg: int


@dataclass(frozen=True, slots=True)
class Dele:
    """``DELE msg`` (RFC 1939 §5)."""

    msg: int


@dataclass(frozen=True, slots=True)
class Noop:
    """``NOOP`` (RFC 1939 §5)."""


@dataclass(frozen=True, slots=True)
class Rset:
    """``RSET`` (RFC 1939 §5)."""


@dataclass(frozen=True, slots=True)
class Top:
    """``TOP msg n`` (RFC 1939 §7)."""

    msg: int
    lines: int


@dataclass(frozen=True, slots=True)
class Uidl:
    """``UIDL [msg]`` (RFC 1939 §7)."""

    msg: int | None


@dataclass(frozen=True, slots=True)
class Quit:
    """``QUIT`` (RFC 1939 §4 / §6)."""


@dataclass(frozen=True, slots=True)
class CommandError:
    """The core rejected a line; send ``reply`` (a complete ``-ERR`` line) as is."""

    reply: bytes


Event = (
    User
    | Pass
    | Auth
    | AuthResponse
    | AuthCancelled
    | Capa
    | Stls
    | Utf8
    | Stat
    | List
    | Retr
    | Dele
    | Noop
    | Rset
    | Top
    | Uidl
    | Quit
    | CommandError
)


# Serialisers ---------------------------------------------------------------------


def _status(indicator: bytes, text: str, code: ResponseCode | None) -> bytes:
    if "\r" in text or "\n" in text:  # a reply is exactly one line: no injection
        raise ValueError("reply text must not contain CR or LF")
    parts = [indicator]
    if code is not None:
        parts.append(b"[" + code.value.encode("ascii") + b"]")  # RFC 2449 §8: code in brackets first
    if text:
        parts.append(text.encode("utf-8"))
    line = b" ".join(parts) + CRLF
    if len(line) > MAX_RESPONSE_LINE:  # RFC 2449 §4: response line ≤ 512 octets incl. CRLF
        raise ValueError("reply line longer than 512 octets")
    return line


def ok(text: str = "", code: ResponseCode | None = None) -> bytes:
    """A ``+OK`` status line (RFC 1939 §3)."""
    return _status(b"+OK", text, code)


def err(text: str = "", code: ResponseCode | None = None) -> bytes:
    """A ``-ERR`` status line, optionally with a response code (RFC 2449 §8, RFC 3206)."""
    return _status(b"-ERR", text, code)


def dot_stuff_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Stream a message body as a POP3 multi-line block, ending with ``.\\r\\n``.

    RFC 1939 §3: lines starting with ``.`` get one more ``.``; the block ends
    with CRLF ``.`` CRLF.  Bare LF is turned into CRLF (stored messages may
    use either); a missing final line ending is added.  Chunk boundaries may
    fall anywhere, including between CR and LF or right before a leading dot.
    Memory use is one chunk.
    """
    at_line_start = True
    last_cr = False
    emitted = False
    for chunk in chunks:
        if not chunk:
            continue
        head = b""
        if last_cr and chunk[:1] == b"\n":
            head = b"\n"  # completes the CRLF the previous chunk started
            chunk = chunk[1:]
            at_line_start = True
        norm = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # bare LF -> CRLF
        if norm:
            stuffed = norm.replace(b"\r\n.", b"\r\n..")  # RFC 1939 §3: byte-stuff leading dots
            if at_line_start and stuffed[:1] == b".":
                stuffed = b"." + stuffed
            out = head + stuffed
            last_cr = norm.endswith(b"\r")
            at_line_start = norm.endswith(b"\r\n")
        else:
            out = head
            last_cr = False
        if out:
            emitted = True
            yield out
    if emitted and not at_line_start:
        yield b"\n" if last_cr else CRLF
    yield b"." + CRLF  # RFC 1939 §3: termination octet followed by CRLF


def dot_stuff(body: bytes) -> bytes:
    """``body`` as a complete multi-line block: the same octets as ``dot_stuff_stream([body])``.

    Fast path for what the store holds (CRLF line ends, final CRLF): no line-end
    rewriting, and the dot-stuffing pass only when a line starts with ``.``.
    """
    if body.endswith(CRLF) and body.count(b"\n") == body.count(CRLF):
        return dot_stuff_crlf(body)  # every LF is a CRLF's: the one-scan path is exact
    return b"".join(dot_stuff_stream([body]))


# A line starting with "." (one regex scan: faster than bytes.find here).
_LF_DOT: Final = re.compile(rb"\n\.")


def dot_stuff_crlf(body: bytes) -> bytes:
    """``body`` as a multi-line block, for input that is CRLF-normalised already (the store's
    message blobs): then exactly ``dot_stuff(body)``, in one scan instead of three.

    Whatever the input, the framing is safe: a dot after *any* LF is stuffed (RFC 1939 §3),
    so no content line can read as the terminator, even to a client that splits on bare
    LF; input without a final CRLF takes the normalising path.
    """
    if not body.endswith(CRLF):
        return dot_stuff(body)
    if body[:1] == b".":
        body = b"." + body.replace(b"\n.", b"\n..")  # RFC 1939 §3
    elif _LF_DOT.search(body) is not None:
        body = body.replace(b"\n.", b"\n..")
    return body + b"." + CRLF


def multiline(first_line: str, body: bytes | Iterable[bytes], code: ResponseCode | None = None) -> bytes:
    """A complete multi-line ``+OK`` response (RFC 1939 §3).

    ``body`` is either message content (``bytes``: dot-stuffed, bare LF
    normalised) or an iterable of single lines without line endings (listing
    entries such as ``b"1 120"`` or CAPA tags).
    """
    head = ok(first_line, code)
    if isinstance(body, bytes | bytearray | memoryview):
        return head + dot_stuff(bytes(body))
    out = [head]
    for line in body:
        if b"\r" in line or b"\n" in line:
            raise ValueError("multiline entries must not contain CR or LF")
        out.append((b"." + line if line[:1] == b"." else line) + CRLF)  # RFC 1939 §3
    out.append(b"." + CRLF)
    return b"".join(out)


# Core ------------------------------------------------------------------------------

_A: Final = Pop3State.AUTHORIZATION
_T: Final = Pop3State.TRANSACTION

#: RFC 1939 §4-§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4, RFC 6856 §2:
#: the states in which each command may be given.
ALLOWED: Final[dict[bytes, frozenset[Pop3State]]] = {
    b"USER": frozenset({_A}),
    b"PASS": frozenset({_A}),
    b"AUTH": frozenset({_A}),
    b"STLS": frozenset({_A}),  # RFC 2595 §4: AUTHORIZATION state only
    b"UTF8": frozenset({_A}),  # RFC 6856 §2: AUTHORIZATION state
    b"CAPA": frozenset({_A, _T}),  # RFC 2449 §5: both states
    b"QUIT": frozenset({_A, _T}),  # RFC 1939 §4, §6
    b"STAT": frozenset({_T}),
    b"LIST": frozenset({_T}),
    b"RETR": frozenset({_T}),
    b"DELE": frozenset({_T}),
    b"NOOP": frozenset({_T}),
    b"RSET": frozenset({_T}),
    b"TOP": frozenset({_T}),
    b"UIDL": frozenset({_T}),
}

_NO_ARG_EVENTS: Final[dict[bytes, Event]] = {
    b"CAPA": Capa(),
    b"STLS": Stls(),
    b"UTF8": Utf8(),
    b"STAT": Stat(),
    b"NOOP": Noop(),
    b"RSET": Rset(),
    b"QUIT": Quit(),
}


class _Syntax(Exception):
    """Internal: a malformed argument; the message becomes the -ERR text."""


def _number(arg: bytes, *, allow_zero: bool = False) -> int:
    # RFC 1939 §3: msg numbers are decimal, 1-based; no sign, no whitespace
    if not arg.isdigit() or len(arg) > _MAX_NUMBER_DIGITS:
        raise _Syntax("invalid number")
    value = int(arg)
    if value > MAX_MSG_NUMBER or (value == 0 and not allow_zero):
        raise _Syntax("invalid number")
    return value


def _mechanism(arg: bytes) -> str:
    # RFC 4422 §3.1: sasl-mech = 1*20 (UPPER-ALPHA / DIGIT / "-" / "_"), case-insensitive here
    name = arg.upper()
    if not 1 <= len(name) <= MAX_MECHANISM_NAME or not all(
        0x41 <= b <= 0x5A or 0x30 <= b <= 0x39 or b in b"-_" for b in name
    ):
        raise _Syntax("invalid mechanism name")
    return name.decode("ascii")


class POP3ServerProtocol:
    """One POP3 server connection's protocol state (no IO).

    ``tls_available``: the adapter can do STLS (a certificate is configured).
    ``tls_active``: the connection is already encrypted (port 995, implicit TLS).
    """

    def __init__(self, *, tls_available: bool = True, tls_active: bool = False) -> None:
        self.state = Pop3State.AUTHORIZATION
        self.tls_active = tls_active
        self._tls_available = tls_available
        self._buf = bytearray()
        self._discarding = False  # inside an over-long line: drop up to LF
        self._auth_continuation = False  # next line is a SASL response
        self._tls_pending = False  # STLS accepted, handshake not done
        self._stopped = False  # QUIT seen
        self._user_given = False  # last command was USER (gates PASS)

    # -- input -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket.

        Nothing is kept after QUIT, in UPDATE, or between an accepted STLS and the handshake:
        plaintext pipelined after STLS is discarded anyway (RFC 2595 §4, CVE-2011-0411), so
        a client that floods there costs no memory.
        """
        if self._stopped or self._tls_pending or self.state is Pop3State.UPDATE:
            return
        if self._discarding:
            lf = data.find(b"\n")
            if lf < 0:
                return  # still inside the over-long line: keep nothing
            data = data[lf + 1 :]
            self._discarding = False
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets received and not yet turned into events (adapters pause reading above a limit)."""
        return len(self._buf)

    def next_event(self) -> Event | NeedData:
        """The next event, or :data:`NEED_DATA` if no complete line is buffered."""
        if self._stopped or self._tls_pending or self.state is Pop3State.UPDATE:
            return NEED_DATA
        limit = MAX_AUTH_LINE if self._auth_continuation else MAX_COMMAND_LINE
        lf = self._buf.find(b"\n", 0, limit)  # a line incl. its LF must fit the limit
        if lf < 0:
            if len(self._buf) >= limit:  # RFC 2449 §4: command line ≤ 255 octets incl. CRLF
                rest_lf = self._buf.find(b"\n", limit)
                if rest_lf < 0:
                    self._buf.clear()
                    self._discarding = True
                else:
                    del self._buf[: rest_lf + 1]
                self._auth_continuation = False
                self._user_given = False
                return CommandError(err("line too long"))
            return NEED_DATA
        line = bytes(self._buf[:lf])
        del self._buf[: lf + 1]
        if line.endswith(b"\r"):
            line = line[:-1]  # CRLF per RFC 1939 §3; a bare LF is tolerated
        if self._auth_continuation:
            self._auth_continuation = False
            if line == b"*":  # RFC 5034 §4: "*" cancels the exchange
                return AuthCancelled()
            return AuthResponse(line)
        return self._command(line)

    # -- adapter-driven transitions ---------------------------------------------

    def begin_auth_continuation(self) -> None:
        """The adapter sent ``+ <challenge>``: the next line is a SASL response."""
        if self.state is not Pop3State.AUTHORIZATION:
            raise RuntimeError("AUTH continuation outside AUTHORIZATION state")
        self._auth_continuation = True

    def authenticated(self) -> None:
        """Login succeeded and the maildrop is locked: enter TRANSACTION (RFC 1939 §4)."""
        if self.state is not Pop3State.AUTHORIZATION:
            raise RuntimeError(f"authenticated() in {self.state.value} state")
        self.state = Pop3State.TRANSACTION
        self._auth_continuation = False
        self._user_given = False

    def quit_to_update(self) -> None:
        """QUIT in TRANSACTION: enter UPDATE, where deletions are committed (RFC 1939 §6)."""
        if self.state is not Pop3State.TRANSACTION:
            raise RuntimeError(f"quit_to_update() in {self.state.value} state")
        self.state = Pop3State.UPDATE

    def start_tls_done(self) -> None:
        """TLS handshake finished after STLS: forget everything read in plaintext.

        RFC 2595 §4 / CVE-2011-0411: bytes pipelined after ``STLS`` arrived
        unprotected and must not be executed inside the TLS session.
        """
        if not self._tls_pending:
            raise RuntimeError("start_tls_done() without STLS")
        self._buf.clear()
        self._discarding = False
        self._auth_continuation = False
        self._user_given = False
        self._tls_pending = False
        self.tls_active = True

    # -- parsing ---------------------------------------------------------------------

    def _command(self, line: bytes) -> Event:
        user_given, self._user_given = self._user_given, False
        keyword, _, rest = line.partition(b" ")
        verb = keyword.upper()  # RFC 1939 §3: keywords are case-insensitive
        if verb == b"APOP":
            return CommandError(err("APOP not supported, use AUTH"))
        allowed = ALLOWED.get(verb)
        if allowed is None:
            return CommandError(err("unknown command"))
        if self.state not in allowed:  # RFC 1939 §3: state gate
            return CommandError(err("command not valid in this state"))
        try:
            return self._dispatch(verb, rest, user_given)
        except _Syntax as exc:
            return CommandError(err(str(exc)))

    def _dispatch(self, verb: bytes, rest: bytes, user_given: bool) -> Event:
        if verb == b"PASS":
            # RFC 1939 §7: PASS only directly after USER; the argument may contain spaces
            if not user_given:
                raise _Syntax("USER first")
            if not rest:
                raise _Syntax("missing password")
            return Pass(rest)
        args = rest.split(b" ") if rest else []
        if any(not a for a in args):
            raise _Syntax("malformed arguments")  # RFC 1939 §3: one space between arguments
        if verb in _NO_ARG_EVENTS:
            if args:
                raise _Syntax("no arguments expected")
            if verb == b"STLS":
                return self._stls()
            if verb == b"QUIT":
                self._stopped = True
            return _NO_ARG_EVENTS[verb]
        if verb == b"USER":
            if len(args) != 1:
                raise _Syntax("USER takes one argument")
            try:
                name = args[0].decode("utf-8")  # ASCII or, after UTF8, UTF-8 (RFC 6856 §2)
            except UnicodeDecodeError:
                raise _Syntax("user name is not UTF-8") from None
            self._user_given = True
            return User(name)
        if verb == b"AUTH":
            if not 1 <= len(args) <= 2:
                raise _Syntax("AUTH takes a mechanism and an optional initial response")
            mech = _mechanism(args[0])
            try:
                initial = decode_initial(args[1] if len(args) == 2 else None)  # RFC 5034 §4: "=" is empty
            except SaslError as exc:
                raise _Syntax(str(exc)) from None
            return Auth(mech, initial)
        if verb in (b"LIST", b"UIDL"):
            if len(args) > 1:
                raise _Syntax("too many arguments")
            msg = _number(args[0]) if args else None
            return List(msg) if verb == b"LIST" else Uidl(msg)
        if verb in (b"RETR", b"DELE"):
            if len(args) != 1:
                raise _Syntax("message number required")
            n = _number(args[0])
            return Retr(n) if verb == b"RETR" else Dele(n)
        if verb == b"TOP":
            if len(args) != 2:
                raise _Syntax("TOP takes a message number and a line count")
            return Top(_number(args[0]), _number(args[1], allow_zero=True))  # RFC 1939 §7: n ≥ 0
        raise AssertionError(verb)  # pragma: no cover - ALLOWED and dispatch agree

    def _stls(self) -> Event:
        if self.tls_active:  # RFC 2595 §4: not after TLS is active
            return CommandError(err("already using TLS"))
        if not self._tls_available:
            return CommandError(err("TLS not available"))
        self._tls_pending = True
        return Stls()
