"""Sans-IO ManageSieve core (RFC 5804): bytes in, typed commands out, encoded responses out.

ManageSieve has no Python library that serves the protocol (the ``managesieve`` package on
PyPI is a client and unmaintained), and the grammar is small: commands are an atom followed by
strings (quoted, or literals ``{n+}`` / ``{n}``) and numbers, ended by CRLF (RFC 5804 §4).

Invariants
----------
* A literal larger than ``max_literal`` is never buffered: its octets are counted and dropped,
  then the command is answered ``NO (QUOTA/MAXSIZE)`` (PUTSCRIPT, CHECKSCRIPT, HAVESPACE) or
  ``NO`` — the session goes on in step with the client.
* The non-literal part of a command is at most ``MAX_LINE`` octets; beyond that the stream
  cannot be resynchronised and the event is a fatal ``BYE``.
* A syntax error inside a line skips to that line's CRLF and answers ``NO``.
* Strings are UTF-8 (RFC 5804 §4, RFC 3629); invalid UTF-8 is a ``NO``.
* Both literal forms are accepted from the client; the server needs no continuation for either
  (RFC 5804 §4: ``literal-c2s``; a ``{n}`` literal is taken as if it were ``{n+}``, as Dovecot
  does). The server's own literals are ``{n}`` (``literal-s2c``).
* The core decides no policy (state, authentication, quotas): it parses and encodes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from mailhouse.proto.events import NEED_DATA, NeedData

#: RFC 5804 §4 does not bound a line; 8 KiB holds any sane command without its literals
#: (Dovecot's managesieve uses 8 KiB as well).
MAX_LINE: Final = 8192
#: RFC 5804 §4: "quoted strings ... SHOULD be limited to 1024 octets"; we send longer ones as literals.
MAX_QUOTED_OUT: Final = 1024
#: Longest decimal number accepted (a literal length or HAVESPACE's size): 10 digits, < 2**32 + slack.
MAX_DIGITS: Final = 10


class Kind(enum.Enum):
    """The response kinds (RFC 5804 §1.3)."""

    OK = "OK"
    NO = "NO"
    BYE = "BYE"


class Code(enum.StrEnum):
    """Response codes (RFC 5804 §1.3); QUOTA sub-codes as §1.3 defines them."""

    AUTH_TOO_WEAK = "AUTH-TOO-WEAK"
    ENCRYPT_NEEDED = "ENCRYPT-NEEDED"
    QUOTA = "QUOTA"
    QUOTA_MAXSCRIPTS = "QUOTA/MAXSCRIPTS"
    QUOTA_MAXSIZE = "QUOTA/MAXSIZE"
    SASL = "SASL"
    TRANSITION_NEEDED = "TRANSITION-NEEDED"
    TRYLATER = "TRYLATER"
    ACTIVE = "ACTIVE"
    NONEXISTENT = "NONEXISTENT"
    ALREADYEXISTS = "ALREADYEXISTS"
    WARNINGS = "WARNINGS"
    TAG = "TAG"


class Arg(enum.Enum):
    STRING = "s"
    NUMBER = "n"
    OPT_STRING = "s?"  # an optional trailing string


S, N, OS = Arg.STRING, Arg.NUMBER, Arg.OPT_STRING

#: The commands of RFC 5804 §2 and their arguments.
COMMANDS: Final[dict[str, tuple[Arg, ...]]] = {
    "AUTHENTICATE": (S, OS),  # §2.1: mechanism [initial response]
    "STARTTLS": (),  # §2.2
    "LOGOUT": (),  # §2.3
    "CAPABILITY": (),  # §2.4
    "HAVESPACE": (S, N),  # §2.5
    "PUTSCRIPT": (S, S),  # §2.6
    "LISTSCRIPTS": (),  # §2.7
    "SETACTIVE": (S,),  # §2.8
    "GETSCRIPT": (S,),  # §2.9
    "DELETESCRIPT": (S,),  # §2.10
    "RENAMESCRIPT": (S, S),  # §2.11
    "CHECKSCRIPT": (S,),  # §2.12
    "NOOP": (OS,),  # §2.13
    "UNAUTHENTICATE": (),  # §2.14
}
#: Commands whose (last) literal is a script: too big is QUOTA/MAXSIZE (§1.3), not a plain NO.
SCRIPT_COMMANDS: Final = frozenset({"PUTSCRIPT", "CHECKSCRIPT", "HAVESPACE"})


@dataclass(frozen=True, slots=True)
class Command:
    """One complete command: NAME upper-cased, ARGS strings (decoded UTF-8) and numbers."""

    name: str
    args: tuple[str | int, ...]

    def string(self, i: int) -> str:
        v = self.args[i]
        assert isinstance(v, str)
        return v

    def number(self, i: int) -> int:
        v = self.args[i]
        assert isinstance(v, int)
        return v


@dataclass(frozen=True, slots=True)
class CommandError:
    """A command that cannot run; REPLY is the encoded answer. FATAL: the session must end (BYE)."""

    reply: bytes
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """The client's answer to a SASL challenge (RFC 5804 §2.1): the string's octets (base64)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SaslCancelled:
    """The client answered a challenge with ``"*"`` (RFC 5804 §2.1)."""


Event = Command | CommandError | SaslResponse | SaslCancelled | NeedData

_NUMBER = re.compile(rb"[0-9]+")
_ATOM = re.compile(rb"[A-Za-z]+")
_LITERAL = re.compile(rb"\{([0-9]{1,%d})(\+?)\}\r\n" % MAX_DIGITS)
_QUOTED_CHARS = re.compile(rb'(?:[^"\\\r\n]|\\["\\])*')
# RFC 5804 §1.6: script names exclude control characters and the line/paragraph separators
_BAD_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class _Syntax(Exception):
    pass


class _Fatal(Exception):
    """The command line outgrew MAX_LINE: the stream cannot be resynchronised."""


class ManageSieveServerProtocol:
    """Frames commands out of the octets a client sends.

    ``receive_data`` appends input, ``next_event`` returns the next :class:`Command` (or error,
    or SASL answer while :meth:`begin_sasl` is on) or ``NEED_DATA``.
    """

    def __init__(self, max_literal: int) -> None:
        self.max_literal = max_literal
        self._buf = bytearray()
        self._tokens: list[bytes | int] = []  # the current command's tokens (name first)
        self._line = 0  # non-literal octets of the current command consumed so far
        self._discard = 0  # literal octets still to drop (a literal over max_literal)
        self._too_big = False  # the current command had such a literal
        self._literal: int | None = None  # a literal of this many octets is being received
        self._skip_line = False  # a syntax error: drop up to the next CRLF
        self._sasl = False

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def begin_sasl(self) -> None:
        """The next line is a SASL response string (RFC 5804 §2.1), not a command."""
        self._sasl = True

    def end_sasl(self) -> None:
        self._sasl = False

    def start_tls_done(self) -> int:
        """STARTTLS went through: forget what was buffered in plaintext (RFC 5804 §2.2, the
        CVE-2011-0411 class). Returns the number of octets dropped."""
        n = len(self._buf)
        self._buf.clear()
        self._reset()
        return n

    def _reset(self) -> None:
        self._tokens = []
        self._line = 0
        self._too_big = False
        self._literal = None
        self._skip_line = False

    def next_event(self) -> Event:
        try:
            return self._next()
        except _Fatal:
            self._buf.clear()
            self._reset()
            return CommandError(response(Kind.BYE, text="Command line too long"), fatal=True)
        except _Syntax as e:
            self._reset()
            self._sasl = False  # a bad SASL response ends the exchange (the server answers NO)
            self._skip_line = True
            return CommandError(response(Kind.NO, text=f"Syntax error: {e}"))

    def _next(self) -> Event:  # noqa: C901 (one state machine, read top to bottom)
        buf = self._buf
        while True:
            if self._discard:
                n = min(self._discard, len(buf))
                del buf[:n]
                self._discard -= n
                if self._discard:
                    return NEED_DATA
            if self._skip_line:
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > 1:
                        del buf[: len(buf) - 1]  # keep a trailing CR
                    return NEED_DATA
                del buf[: i + 2]
                self._skip_line = False
                continue
            if self._literal is not None:
                if len(buf) < self._literal:
                    return NEED_DATA
                self._tokens.append(bytes(buf[: self._literal]))
                del buf[: self._literal]
                self._literal = None
                continue
            if not buf:
                return NEED_DATA
            c = buf[0]
            if c == 0x20 and self._tokens:  # SP between arguments
                del buf[:1]
                self._count(1)
                continue
            if buf.startswith(b"\r\n"):
                del buf[:2]
                tokens, too_big = self._tokens, self._too_big
                self._reset()
                return self._complete(tokens, too_big)
            if c == 0x0D and len(buf) == 1:
                return NEED_DATA
            if c == 0x22:  # quoted string
                m = _QUOTED_CHARS.match(buf, 1)
                assert m is not None
                end = m.end()
                if end >= len(buf) or (end == len(buf) - 1 and buf[end] == 0x5C):  # may go on
                    self._check_partial(len(buf))
                    return NEED_DATA
                if buf[end] != 0x22:
                    raise _Syntax("bad quoted string")
                raw = bytes(buf[1:end])
                self._count(end + 1)
                del buf[: end + 1]
                self._tokens.append(raw.replace(b'\\"', b'"').replace(b"\\\\", b"\\"))
                continue
            if c == 0x7B:  # literal
                m = _LITERAL.match(buf)
                if m is None:
                    if len(buf) < MAX_DIGITS + 5 and re.fullmatch(rb"\{[0-9]*\+?\}?\r?", buf):
                        return NEED_DATA
                    raise _Syntax("bad literal")
                n = int(m.group(1))  # before the del: a match on a bytearray reads it live
                self._count(m.end())
                del buf[: m.end()]
                if n > self.max_literal:
                    self._discard = n  # dropped as it arrives; answered at the command's end
                    self._too_big = True
                    self._tokens.append(b"")
                else:
                    self._literal = n
                continue
            if self._sasl:
                raise _Syntax("a SASL response is a string")
            m = (_NUMBER if self._tokens else _ATOM).match(buf)  # §4: command name, then numbers
            if m is None:
                raise _Syntax("unexpected character")
            if m.end() == len(buf):
                self._check_partial(len(buf))
                return NEED_DATA  # the token may go on
            tok = bytes(m.group())
            if self._tokens and len(tok) > MAX_DIGITS:
                raise _Syntax("number too large")
            self._count(m.end())
            del buf[: m.end()]
            self._tokens.append(int(tok) if self._tokens else tok)

    def _count(self, n: int) -> None:
        self._line += n
        if self._line > MAX_LINE:
            raise _Fatal()

    def _check_partial(self, n: int) -> None:
        if self._line + n > MAX_LINE:
            raise _Fatal()

    def _complete(self, tokens: list[bytes | int], too_big: bool) -> Event:
        if self._sasl:
            self._sasl = False
            if len(tokens) != 1 or not isinstance(tokens[0], bytes):
                return CommandError(response(Kind.NO, text="Bad SASL response"))
            if tokens[0] == b"*":
                return SaslCancelled()
            return SaslResponse(tokens[0])
        if not tokens:
            return CommandError(response(Kind.NO, text="Empty command"))
        head = tokens[0]
        assert isinstance(head, bytes)
        name = head.decode("ascii").upper()
        spec = COMMANDS.get(name)
        if spec is None:
            return CommandError(response(Kind.NO, text=f"Unknown command {name[:40]}"))
        if too_big:
            if name in SCRIPT_COMMANDS:
                return CommandError(response(Kind.NO, Code.QUOTA_MAXSIZE, "Script is too large"))
            return CommandError(response(Kind.NO, text="Literal is too large"))
        args = tokens[1:]
        required = sum(a is not Arg.OPT_STRING for a in spec)
        if not required <= len(args) <= len(spec):
            return CommandError(response(Kind.NO, text=f"Wrong number of arguments to {name}"))
        out: list[str | int] = []
        for a, v in zip(spec, args, strict=False):
            if a is Arg.NUMBER:
                if not isinstance(v, int):
                    return CommandError(response(Kind.NO, text=f"{name}: number expected"))
                out.append(v)
                continue
            if not isinstance(v, bytes):
                return CommandError(response(Kind.NO, text=f"{name}: string expected"))
            try:
                out.append(v.decode("utf-8"))  # RFC 5804 §4: strings are UTF-8
            except UnicodeDecodeError:
                return CommandError(response(Kind.NO, text=f"{name}: invalid UTF-8"))
        return Command(name, tuple(out))


# ---------------------------------------------------------------------- output
def string(s: str | bytes) -> bytes:
    """A string as RFC 5804 §4 sends it: quoted when short and plain, else a literal ``{n}``."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    if len(b) <= MAX_QUOTED_OUT and not any(ch in b for ch in b"\r\n\x00"):
        return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(b) + b


def response(
    kind: Kind, code: Code | None = None, text: str | None = None, *, code_arg: str | None = None
) -> bytes:
    """``OK``/``NO``/``BYE`` [``(CODE [arg])``] [text] CRLF (RFC 5804 §1.3, §4 ``response-*``)."""
    out = kind.value.encode()
    if code is not None:
        out += b" (" + code.value.encode()
        if code_arg is not None:
            out += b" " + string(code_arg)  # e.g. (TAG "x"), (SASL "base64")
        out += b")"
    if text is not None:
        out += b" " + string(text)
    return out + b"\r\n"


def capability_lines(caps: list[tuple[str, str | None]]) -> bytes:
    """The capability response body (RFC 5804 §1.7): one ``"NAME" ["value"]`` line each."""
    return b"".join(string(k) + (b"" if v is None else b" " + string(v)) + b"\r\n" for k, v in caps)


def valid_script_name(name: str) -> bool:
    """RFC 5804 §1.6: a non-empty name without control characters (at most 1024 octets here)."""
    return 0 < len(name.encode("utf-8")) <= 1024 and _BAD_NAME.search(name) is None


__all__ = [
    "COMMANDS",
    "MAX_LINE",
    "NEED_DATA",
    "Code",
    "Command",
    "CommandError",
    "Event",
    "Kind",
    "ManageSieveServerProtocol",
    "SaslCancelled",
    "SaslResponse",
    "capability_lines",
    "response",
    "string",
    "valid_script_name",
]
