"""Sans-IO IMAP4rev2/IMAP4rev1 server protocol core (RFC 9051, RFC 3501 and extensions).

Modules, bottom up (imports point downwards only, stdlib only):

* ``errors`` — typed refusals: :class:`ReplyStatus`, :class:`ErrorKind`, :class:`ParseError`;
  ``sequence`` (sequence sets), ``mutf7`` (modified UTF-7 mailbox names);
* ``reader`` — the lexer: a :class:`~mailhouse.proto.imap.reader.Reader` over one framed command;
* ``search`` (search keys), ``commands`` (typed command arguments), ``events`` (what the core emits);
* ``grammar_session``, ``grammar_mailbox``, ``grammar_fetch``, ``grammar_store``,
  ``grammar_search``, ``grammar_misc`` — the argument grammar, one module per command family;
* ``grammar`` — the command table (:data:`COMMAND_NAMES`) and :func:`parse_command`;
* ``receiver`` — :class:`IMAPServerProtocol`: framing of lines, literals, continuations, IDLE
  and AUTHENTICATE modes;
* ``response`` serialises server responses.

No sockets, no mailbox state. :data:`NEED_DATA` is the one sentinel of every core in ``proto/``.
"""

from mailhouse.proto.events import NEED_DATA
from mailhouse.proto.imap.errors import ErrorKind, MailboxNameError, ParseError, ReplyStatus
from mailhouse.proto.imap.events import (
    CONTINUE_LITERAL,
    AuthContinuation,
    Command,
    CommandError,
    ContinuationNeeded,
    Event,
    IdleDone,
    LiteralTooBig,
)
from mailhouse.proto.imap.grammar import COMMAND_NAMES, parse_command
from mailhouse.proto.imap.receiver import IMAPServerProtocol
from mailhouse.proto.imap.sequence import SequenceSet, SequenceSetError

__all__ = [
    "COMMAND_NAMES",
    "CONTINUE_LITERAL",
    "NEED_DATA",
    "AuthContinuation",
    "Command",
    "CommandError",
    "ContinuationNeeded",
    "ErrorKind",
    "Event",
    "IMAPServerProtocol",
    "IdleDone",
    "LiteralTooBig",
    "MailboxNameError",
    "ParseError",
    "ReplyStatus",
    "SequenceSet",
    "SequenceSetError",
    "parse_command",
]
