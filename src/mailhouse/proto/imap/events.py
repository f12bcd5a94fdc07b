"""The events the IMAP receiver (``receiver.py``) hands to the adapter.

RFCs: RFC 9051 §2.2.1 (tagged client commands), §7.1 (BAD/NO status responses), §7.5
(continuation request), §6.2.2 (AUTHENTICATE continuation lines), §6.3.13 (IDLE / DONE);
RFC 7888 §4 and RFC 9051 §7.1 (``[TOOBIG]`` literals).

Invariants:

* Every event is a frozen dataclass; :data:`Event` is their union. "No complete event yet" is
  the one :data:`~mailhouse.proto.events.NEED_DATA` sentinel shared by every core.
* A :class:`CommandError` is typed: ``status``, ``code``, ``text`` and ``kind`` are its fields;
  ``reply_bytes`` is derived from them (:func:`~mailhouse.proto.imap.errors.status_line`), so
  an adapter answers a refusal by kind, never by matching bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import overload

from mailhouse.proto.imap.commands import CommandArgs
from mailhouse.proto.imap.errors import ErrorKind, ReplyStatus, status_line

__all__ = [
    "CONTINUE_LITERAL",
    "AuthContinuation",
    "Command",
    "CommandError",
    "ContinuationNeeded",
    "Event",
    "IdleDone",
    "LiteralTooBig",
]

CONTINUE_LITERAL = b"+ Ready for literal data\r\n"  # RFC 9051 §7.5


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


# RFC 9051 §7.1: status response = (tag / "*") SP ("NO" / "BAD") SP ["[" resp-text-code "]" SP] text
_STATUS_LINE = re.compile(rb"(\S+) (BAD|NO) (?:\[([^\]\r\n]*)\] )?([^\r\n]*)\r\n")


@dataclass(frozen=True, slots=True, init=False)
class CommandError:
    """A refused command: send :attr:`reply_bytes` (a tagged, or untagged when ``tag`` is None,
    BAD/NO); the command is discarded.

    ``status``/``code``/``text`` are what goes on the wire; ``kind`` says what went wrong for an
    adapter that answers some refusals its own way (:class:`~mailhouse.proto.imap.errors.ErrorKind`).
    ``CommandError(tag, reply_bytes)`` also builds one from its wire form (kind ``SYNTAX``);
    :class:`ValueError` if the bytes are not exactly such a status line."""

    tag: str | None
    status: ReplyStatus
    text: str
    code: str | None
    kind: ErrorKind

    @overload
    def __init__(self, tag: str | None, status: bytes, /) -> None: ...

    @overload
    def __init__(
        self,
        tag: str | None,
        status: ReplyStatus,
        text: str,
        code: str | None = None,
        kind: ErrorKind = ErrorKind.SYNTAX,
    ) -> None: ...

    def __init__(
        self,
        tag: str | None,
        status: ReplyStatus | bytes,
        text: str = "",
        code: str | None = None,
        kind: ErrorKind = ErrorKind.SYNTAX,
    ) -> None:
        if isinstance(status, bytes):
            reply = status
            m = _STATUS_LINE.fullmatch(reply)
            if m is None or m.group(1).decode("ascii", "replace") != (tag or "*"):
                raise ValueError(f"not a BAD/NO status line for tag {tag!r}: {reply!r}")
            status = ReplyStatus(m.group(2).decode("ascii"))
            code = None if m.group(3) is None else m.group(3).decode("ascii", "replace")
            text = m.group(4).decode("ascii", "replace")
            if status_line(tag, status, text, code) != reply:
                raise ValueError(f"status line does not round-trip: {reply!r}")
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "kind", kind)

    @property
    def reply_bytes(self) -> bytes:
        """The reply line, CRLF included: ``tag SP status SP [ "[" code "]" SP ] text``."""
        return status_line(self.tag, self.status, self.text, self.code)


@dataclass(frozen=True, slots=True)
class LiteralTooBig:
    """An announced literal exceeds a limit; send ``reply_bytes``. ``synchronizing`` False
    means the client is already sending it (see the ``receiver`` module docstring)."""

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
