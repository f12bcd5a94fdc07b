"""Sans-IO SMTP client core (for the outbound MTA and test peers), stdlib only.

Purpose
    Assemble server replies from bytes into ``ServerReply`` events and produce
    the bytes of client commands, including a DATA encoder that can never emit a
    message another server could split differently.

RFCs
    RFC 5321 §4.2 (reply syntax, multi-line replies), §4.5.2 (dot-stuffing),
    §4.5.3.1.5 (reply line ≤ 512 octets); RFC 2034/3463 (enhanced status codes);
    RFC 3030 (BDAT); RFC 3207 (STARTTLS); RFC 4954 (AUTH); RFC 1869 (EHLO keywords).

Invariants
    * ``message_data``/``DataEncoder`` turn every bare CR and bare LF into CRLF
      *before* dot-stuffing, so a "." after a bare CR or bare LF is stuffed too
      (SMTP smuggling: CVE-2023-51764 and the CVE-2026-33604 class); the output
      always ends with exactly one ``<CRLF>.<CRLF>``.
    * Reply lines are capped at ``MAX_REPLY_LINE`` octets and replies at
      ``MAX_REPLY_LINES`` lines; a violation yields ``ReplyProtocolError`` and
      the client stops parsing (the adapter drops the connection).  RFC 5321
      §4.5.3.1.5 allows 512 octets; we are lenient up to 4096 because real
      servers exceed it in EHLO/HELP text.
    * After a 220 reply to STARTTLS, reply parsing stops until
      ``start_tls_done()``; any bytes still buffered (``bytes_buffered()``) were
      sent in plaintext before the handshake - a response-injection attempt the
      adapter must treat as fatal.

Why hand-written
    ``smtplib``/``aiosmtplib`` own their sockets and do not expose BDAT framing,
    bare-CR normalisation before dot-stuffing, or the STARTTLS buffer check in a
    sans-IO form (DESIGN.md convention 6).
"""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from mailhouse.proto.events import NEED_DATA, NeedData  # the one sentinel of every core, re-exported

__all__ = [
    "NEED_DATA",
    "NeedData",
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "ServerReply",
    "ReplyProtocolError",
    "ClientEvent",
    "DataEncoder",
    "SMTPClientProtocol",
    "parse_ehlo_extensions",
]

# RFC 5321 §4.5.3.1.5 says 512 octets incl. CRLF; lenient cap, see module docstring.
MAX_REPLY_LINE = 4096
# No RFC limit; EHLO replies have ~20 lines. Bounds memory against a hostile server.
MAX_REPLY_LINES = 100

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")  # RFC 3463 §2
_NEWLINES = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerReply:
    code: int
    enhanced: str | None
    lines: tuple[str, ...]  # text of each line, enhanced code removed

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500


@dataclass(frozen=True, slots=True)
class ReplyProtocolError:
    reason: str


ClientEvent = ServerReply | ReplyProtocolError


def parse_ehlo_extensions(reply: ServerReply) -> dict[str, str | None]:
    """RFC 5321 §4.1.1.1: lines after the first are ``keyword [params]``; keys upper-cased."""
    ext: dict[str, str | None] = {}
    for line in reply.lines[1:]:
        key, _, params = line.strip().partition(" ")
        if key:
            ext[key.upper()] = params.strip() or None
    return ext


class DataEncoder:
    """Incremental DATA encoder: normalise line ends to CRLF, then dot-stuff.

    ``feed(chunk)`` may be called with arbitrary chunks; ``finish()`` returns the
    tail including ``<CRLF>.<CRLF>``.
    """

    def __init__(self) -> None:
        self._bol = True
        self._pending_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]  # might be the CR of a CRLF split across chunks
            self._pending_cr = True
        # Bare CR and bare LF become CRLF (RFC 5321 §2.3.8), before dot-stuffing.
        norm = _NEWLINES.sub(b"\r\n", data)
        if not norm:
            return b""
        # RFC 5321 §4.5.2: a line starting with "." gets one more "."
        out = norm.replace(b"\n.", b"\n..")
        if self._bol and out.startswith(b"."):
            out = b"." + out
        self._bol = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        out = b""
        if self._pending_cr:
            self._pending_cr = False
            out = b"\r\n"
            self._bol = True
        if not self._bol:
            out += b"\r\n"
        self._bol = True
        return out + b".\r\n"  # RFC 5321 §4.1.1.4: <CRLF>.<CRLF>


def _arg(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if any(b in (0x0D, 0x0A, 0x00) for b in raw):
        raise ValueError("CR, LF or NUL in an SMTP command argument")  # command injection
    return raw


class SMTPClientProtocol:
    """Sans-IO SMTP client core: bytes from the server in, ``ServerReply`` out."""

    def __init__(
        self, *, max_reply_line: int = MAX_REPLY_LINE, max_reply_lines: int = MAX_REPLY_LINES
    ) -> None:
        self.max_reply_line = max_reply_line
        self.max_reply_lines = max_reply_lines
        self._buf = bytearray()
        self._lines: list[tuple[int, str]] = []
        self._events: deque[ClientEvent] = deque()
        self._pending: deque[str] = deque(["GREETING"])  # command each coming reply answers
        self._broken = False
        self._tls_wait = False
        self.extensions: dict[str, str | None] = {}
        self.tls_active = False

    def bytes_buffered(self) -> int:
        return len(self._buf)

    @property
    def waiting_for_tls(self) -> bool:
        return self._tls_wait

    def receive_data(self, data: bytes) -> None:
        if not self._broken:
            self._buf += data

    def next_event(self) -> ClientEvent | NeedData:
        if self._events:
            return self._events.popleft()
        while not self._broken and not self._tls_wait:
            i = self._buf.find(b"\n", 0, self.max_reply_line)
            if i < 0:
                if len(self._buf) >= self.max_reply_line:
                    return self._fail("reply line too long")  # RFC 5321 §4.5.3.1.5
                return NEED_DATA
            raw = bytes(self._buf[: i + 1])
            del self._buf[: i + 1]
            line = raw.rstrip(b"\r\n")  # tolerant of bare-LF servers on input
            # RFC 5321 §4.2: Reply-line = Reply-code [ SP textstring ] CRLF / Reply-code "-" ...
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                return self._fail("malformed reply line")
            code = int(line[:3])
            if not 200 <= code <= 599:
                return self._fail("reply code out of range")
            if self._lines and self._lines[0][0] != code:
                return self._fail("reply code changed inside a multi-line reply")
            self._lines.append((code, line[4:].decode("utf-8", errors="replace")))
            if line[3:4] == b"-":
                if len(self._lines) >= self.max_reply_lines:
                    return self._fail("too many reply lines")
                continue
            return self._complete()
        return NEED_DATA

    def _fail(self, reason: str) -> ReplyProtocolError:
        self._broken = True
        self._buf.clear()
        self._lines.clear()
        return ReplyProtocolError(reason)

    def _complete(self) -> ServerReply:
        code = self._lines[0][0]
        texts = [t for _, t in self._lines]
        self._lines = []
        enhanced: str | None = None
        m = _ENHANCED.match(texts[0])
        if m and m.group(1) == str(code)[0]:  # RFC 3463 §2: class matches the reply class
            enhanced = ".".join(m.groups())
            texts = [t[len(m.group(0)) :] if t.startswith(enhanced) else t for t in texts]
        reply = ServerReply(code, enhanced, tuple(texts))
        command = self._pending.popleft() if self._pending else ""
        if command == "EHLO" and code == 250:
            self.extensions = parse_ehlo_extensions(reply)
        elif command == "STARTTLS" and code == 220:
            self._tls_wait = True  # RFC 3207 §4: next bytes must be the TLS handshake
        return reply

    def start_tls_done(self) -> None:
        """TLS is up: forget everything learnt before it (RFC 3207 §4.2)."""
        self._buf.clear()
        self._lines.clear()
        self._pending.clear()
        self._tls_wait = False
        self.extensions = {}
        self.tls_active = True

    # ------------------------------------------------------------ commands

    def _cmd(self, verb: str, line: bytes) -> bytes:
        self._pending.append(verb)
        return line + b"\r\n"

    def ehlo(self, name: str) -> bytes:
        return self._cmd("EHLO", b"EHLO " + _arg(name))

    def helo(self, name: str) -> bytes:
        return self._cmd("HELO", b"HELO " + _arg(name))

    @staticmethod
    def _params(params: Mapping[str, str | None] | None) -> bytes:
        out = b""
        for key, value in (params or {}).items():
            out += b" " + _arg(key.upper()) + (b"" if value is None else b"=" + _arg(value))
        return out

    def mail(self, address: str | bytes, params: Mapping[str, str | None] | None = None) -> bytes:
        return self._cmd("MAIL", b"MAIL FROM:<" + _arg(address) + b">" + self._params(params))

    def rcpt(self, address: str | bytes, params: Mapping[str, str | None] | None = None) -> bytes:
        return self._cmd("RCPT", b"RCPT TO:<" + _arg(address) + b">" + self._params(params))

    def data(self) -> bytes:
        return self._cmd("DATA", b"DATA")

    def message_data(self, body: bytes) -> bytes:
        """The whole message, normalised, dot-stuffed and ended by <CRLF>.<CRLF>.

        The reply to it is the reply to the message (pending entry "DATA-END").
        """
        enc = DataEncoder()
        self._pending.append("DATA-END")
        return enc.feed(body) + enc.finish()

    def bdat(self, chunk: bytes, last: bool = False) -> bytes:
        # RFC 3030 §2: "BDAT" SP chunk-size [ SP "LAST" ] CRLF, then the raw bytes
        line = b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"")
        self._pending.append("BDAT")
        return line + chunk

    def rset(self) -> bytes:
        return self._cmd("RSET", b"RSET")

    def noop(self) -> bytes:
        return self._cmd("NOOP", b"NOOP")

    def quit(self) -> bytes:
        return self._cmd("QUIT", b"QUIT")

    def starttls(self) -> bytes:
        return self._cmd("STARTTLS", b"STARTTLS")

    def auth(self, mechanism: str, initial: bytes | None = None) -> bytes:
        # RFC 4954 §4: initial response is base64; "=" for an empty one
        line = b"AUTH " + _arg(mechanism.upper())
        if initial is not None:
            line += b" " + (base64.b64encode(initial) or b"=")
        return self._cmd("AUTH", line)

    def auth_response(self, data: bytes) -> bytes:
        return self._cmd("AUTH", base64.b64encode(data))

    def auth_cancel(self) -> bytes:
        return self._cmd("AUTH", b"*")  # RFC 4954 §4
