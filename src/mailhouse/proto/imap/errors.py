"""Typed IMAP parse errors: the status, response code, text and kind of a refusal the core decides.

RFCs: RFC 9051 §7.1 (status responses: ``tag SP ("NO" / "BAD") SP [resp-text-code SP] text``),
RFC 5530 (response codes such as ``TOOBIG``, ``CANNOT``), RFC 3501 §5.1.3 (modified UTF-7
mailbox names).

The grammar raises :class:`ParseError` (or its subclass :class:`MailboxNameError`); the receiver
turns it into a :class:`~mailhouse.proto.imap.events.CommandError` event with the same fields.
An adapter decides on the typed :class:`ErrorKind`, never by looking at reply bytes.

Invariants:

* Stdlib only; imports nothing else of ours, so every other IMAP module may import it.
* :func:`status_line` is the one place that turns (tag, status, code, text) into wire bytes
  for the core's own refusals: ``* `` when the tag is unknown, ``[code] `` only when there is
  a code, CRLF at the end, non-ASCII text replaced by ``?`` (replies are ASCII).
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = ["ErrorKind", "MailboxNameError", "ParseError", "ReplyStatus", "status_line"]


class ReplyStatus(enum.Enum):
    """The status of a refusal the core decides (RFC 9051 §7.1.2, §7.1.3)."""

    BAD = "BAD"  # RFC 9051 §7.1.3: protocol-level error in the client's command
    NO = "NO"  # RFC 9051 §7.1.2: operational error (e.g. a synchronising literal too big)


class ErrorKind(enum.Enum):
    """What went wrong, for adapters that answer some refusals differently from the core."""

    SYNTAX = "syntax"  # any other syntax or limit violation: answered as the core says
    # A mailbox name that is not valid modified UTF-7 (RFC 3501 §5.1.3). The core says BAD; the
    # IMAP server answers NO [CANNOT] (RFC 5530 §3) like its other mailbox-name checks. An
    # invalid UTF-8 name under UTF8=ACCEPT stays SYNTAX.
    MAILBOX_NAME = "mailbox-name"


class ParseError(ValueError):
    """A syntax or limit violation; the core answers it with BAD (``code`` is a response code)."""

    kind: ClassVar[ErrorKind] = ErrorKind.SYNTAX

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class MailboxNameError(ParseError):
    """A mailbox name that is not valid modified UTF-7 (RFC 3501 §5.1.3)."""

    kind: ClassVar[ErrorKind] = ErrorKind.MAILBOX_NAME


def status_line(tag: str | None, status: ReplyStatus, text: str, code: str | None = None) -> bytes:
    """``tag SP status SP ["[" code "]" SP] text CRLF`` (RFC 9051 §7.1); ``*`` without a tag."""
    return f"{tag or '*'} {status.value} {f'[{code}] ' if code else ''}{text}\r\n".encode("ascii", "replace")
