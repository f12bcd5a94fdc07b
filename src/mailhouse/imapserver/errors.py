"""Typed errors raised deep inside IMAP command handlers and caught once per command.

The session's dispatcher (``session.IMAPSession._run_command``) maps them to replies:

* :class:`Bad` → ``tag BAD [code] text`` (syntax/protocol misuse the core could not see,
  e.g. a sequence number beyond EXISTS, RFC 9051 §6.4.5 / §7.1.3);
* :class:`No` → ``tag NO [code] text`` (a user error: no such mailbox, over quota ...);
* :class:`Transient` → ``tag NO [UNAVAILABLE] text`` (RFC 5530 §3: try again later);
* :class:`AlreadyAnswered` → nothing more: the handler sent its own tagged reply (STARTTLS,
  COMPRESS, an IDLE ended by a bad line);
* any other exception is a server bug → logged with its traceback, ``NO [SERVERBUG]``
  (RFC 5530 §3), and the session goes on.
"""

from __future__ import annotations


class ImapError(Exception):
    status = "NO"

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class Bad(ImapError):
    status = "BAD"


class No(ImapError):
    status = "NO"


class Transient(ImapError):
    """Store busy/unavailable: the client may retry (RFC 5530 UNAVAILABLE)."""

    status = "NO"

    def __init__(
        self, text: str = "Temporary failure, try again later", code: str | None = "UNAVAILABLE"
    ) -> None:
        super().__init__(text, code)


class AlreadyAnswered(Exception):
    """A handler sent its own tagged reply (STARTTLS, COMPRESS, IDLE error)."""
