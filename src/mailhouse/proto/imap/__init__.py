"""Sans-IO IMAP4rev2/IMAP4rev1 server protocol core (RFC 9051, RFC 3501 and extensions).

``parser`` frames and parses client commands into the typed dataclasses of ``commands``
(search keys in ``search``, sequence sets in ``sequence``, mailbox names via ``mutf7``);
``response`` serialises server responses. Stdlib only; no sockets, no mailbox state.
"""

from mailhouse.proto.imap.commands import ParseError
from mailhouse.proto.imap.parser import (
    CONTINUE_LITERAL,
    NEED_DATA,
    AuthContinuation,
    Command,
    CommandError,
    ContinuationNeeded,
    Event,
    IdleDone,
    IMAPServerProtocol,
    LiteralTooBig,
    parse_command,
)
from mailhouse.proto.imap.sequence import SequenceSet, SequenceSetError

__all__ = [
    "CONTINUE_LITERAL",
    "NEED_DATA",
    "AuthContinuation",
    "Command",
    "CommandError",
    "ContinuationNeeded",
    "Event",
    "IMAPServerProtocol",
    "IdleDone",
    "LiteralTooBig",
    "ParseError",
    "SequenceSet",
    "SequenceSetError",
    "parse_command",
]
