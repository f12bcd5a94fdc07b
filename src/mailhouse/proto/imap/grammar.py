"""The IMAP command table and :func:`parse_command`: tag, command name, then the family grammar.

RFCs: RFC 9051 §2.2.1 and §9 (``command = tag SP (command-any / command-auth /
command-nonauth / command-select) CRLF``), RFC 9051 §6.4.9 and RFC 5256 §3 (the ``UID``
prefix). The arguments of each command are parsed by its family module: ``grammar_session``
(connection, authentication), ``grammar_mailbox``, ``grammar_fetch``, ``grammar_store``,
``grammar_search`` (SEARCH, ESEARCH, SORT, THREAD) and ``grammar_misc`` (QUOTA, METADATA,
NOTIFY, URLAUTH), ``grammar_acl`` (RFC 4314).

Invariants:

* :data:`COMMANDS` is the one table of commands the core accepts; :data:`COMMAND_NAMES` is
  derived from it and :data:`UID_COMMANDS` and spells every name exactly as
  :attr:`Command.name <mailhouse.proto.imap.events.Command.name>` carries it — upper-case,
  ``"UID FETCH"`` for UID forms — which is the key of the IMAP server's dispatch table.
* Pure syntax, stdlib only; a refusal is a :class:`~mailhouse.proto.imap.errors.ParseError`.

Conventions of every ``grammar_*`` module: each ``parse_*`` function has the signature
``(r: Reader, uid: bool) -> CommandArgs`` (:data:`ArgParser`); :func:`parse_command` calls it
with the cursor just after the command name (``uid`` True for a ``UID`` form), it reads the
arguments and stops, and ``parse_command`` checks that the line ends there. No mailbox state,
no policy, no I/O. Every refusal is a :class:`~mailhouse.proto.imap.errors.ParseError` raised
through the :class:`~mailhouse.proto.imap.reader.Reader` (the receiver answers it with BAD);
client text echoed in an error is cut to 40 characters. Recursion only in search keys, bounded
by :data:`~mailhouse.proto.imap.search.MAX_SEARCH_DEPTH`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from mailhouse.proto.imap import (
    grammar_acl,
    grammar_fetch,
    grammar_mailbox,
    grammar_misc,
    grammar_search,
    grammar_session,
    grammar_store,
)
from mailhouse.proto.imap.commands import CommandArgs
from mailhouse.proto.imap.events import Command
from mailhouse.proto.imap.reader import Reader, Segment

__all__ = ["COMMANDS", "COMMAND_NAMES", "UID_COMMANDS", "ArgParser", "parse_command"]

ArgParser = Callable[[Reader, bool], CommandArgs]
"""Parses one command's arguments: ``(reader after the name, uid form?) -> args``."""

COMMANDS: Final[dict[str, ArgParser]] = {
    "CAPABILITY": grammar_session.parse_noargs,
    "NOOP": grammar_session.parse_noargs,
    "LOGOUT": grammar_session.parse_noargs,
    "STARTTLS": grammar_session.parse_noargs,
    "AUTHENTICATE": grammar_session.parse_authenticate,
    "LOGIN": grammar_session.parse_login,
    "ENABLE": grammar_session.parse_enable,
    "SELECT": grammar_mailbox.parse_select,
    "EXAMINE": grammar_mailbox.parse_examine,
    "CREATE": grammar_mailbox.parse_create,
    "DELETE": grammar_mailbox.parse_mailbox,
    "RENAME": grammar_mailbox.parse_rename,
    "SUBSCRIBE": grammar_mailbox.parse_mailbox,
    "UNSUBSCRIBE": grammar_mailbox.parse_mailbox,
    "LIST": grammar_mailbox.parse_list,
    "LSUB": grammar_mailbox.parse_lsub,
    "NAMESPACE": grammar_session.parse_noargs,
    "STATUS": grammar_mailbox.parse_status,
    "APPEND": grammar_mailbox.parse_append,
    "IDLE": grammar_session.parse_noargs,
    "CHECK": grammar_session.parse_noargs,
    "CLOSE": grammar_session.parse_noargs,
    "UNSELECT": grammar_session.parse_noargs,
    "UNAUTHENTICATE": grammar_session.parse_noargs,
    "EXPUNGE": grammar_store.parse_expunge,
    "SEARCH": grammar_search.parse_search,
    "FETCH": grammar_fetch.parse_fetch,
    "STORE": grammar_store.parse_store,
    "COPY": grammar_store.parse_copy,
    "MOVE": grammar_store.parse_copy,
    "SORT": grammar_search.parse_sort,
    "THREAD": grammar_search.parse_thread,
    "GETQUOTA": grammar_misc.parse_getquota,
    "GETQUOTAROOT": grammar_mailbox.parse_mailbox,
    "SETQUOTA": grammar_misc.parse_setquota,
    "ID": grammar_session.parse_id,
    "COMPRESS": grammar_session.parse_compress,
    "GETMETADATA": grammar_misc.parse_getmetadata,
    "SETMETADATA": grammar_misc.parse_setmetadata,
    "NOTIFY": grammar_misc.parse_notify,
    "GENURLAUTH": grammar_misc.parse_genurlauth,
    "RESETKEY": grammar_misc.parse_resetkey,
    "URLFETCH": grammar_misc.parse_urlfetch,
    "CANCELUPDATE": grammar_search.parse_cancelupdate,
    "ESEARCH": grammar_search.parse_esearch,
    "SETACL": grammar_acl.parse_setacl,  # RFC 4314 §3
    "DELETEACL": grammar_acl.parse_deleteacl,
    "GETACL": grammar_acl.parse_getacl,
    "LISTRIGHTS": grammar_acl.parse_listrights,
    "MYRIGHTS": grammar_acl.parse_getacl,
}
"""Command name → argument parser (names without the ``UID`` prefix)."""

# RFC 9051 §6.4.9: UID prefixes COPY, MOVE, FETCH, SEARCH, STORE, EXPUNGE;
# RFC 5256 §3 adds SORT and THREAD.
UID_COMMANDS: Final = frozenset(("COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"))

COMMAND_NAMES: Final[frozenset[str]] = frozenset(COMMANDS) | frozenset(f"UID {n}" for n in UID_COMMANDS)
"""Every command name the parser accepts, spelled as :attr:`Command.name` carries it
(``"FETCH"``, ``"UID FETCH"``, ``"EXAMINE"``): the IMAP server's dispatch table and state gate
are keyed by these names, and a test checks that table against this set."""


def parse_command(segs: list[Segment], utf8: bool = False) -> Command:
    """Parse a framed command (line segments and literals). Raises :class:`ParseError`."""
    r = Reader(segs, utf8)
    tag = r.tag()
    r.sp()
    name = r.atom().upper()
    uid = False
    if name == "UID":
        r.sp()
        sub = r.atom().upper()
        if sub not in UID_COMMANDS:
            r.error(f"Unknown UID command {sub[:40]}")
        uid = True
        name = sub
    parser = COMMANDS.get(name)
    if parser is None:
        r.error(f"Unknown command {name[:40]}")
    args = parser(r, uid)
    r.end()
    return Command(tag, f"UID {name}" if uid else name, args)
