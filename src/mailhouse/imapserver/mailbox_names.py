"""Mailbox naming policy: the hierarchy delimiter, what a valid name is, looking a name up.

RFCs: RFC 9051 §5.1 (mailbox naming, INBOX case-insensitive, also as a parent), §6.3.4 (the
hierarchy delimiter); RFC 5530 §3 (``NO [CANNOT]``, ``NO [NONEXISTENT]``).

The policy (what a valid name is, and that a *new* name — CREATE, the target of RENAME — may
not contain the LIST wildcards ``%`` or ``*``) is `accounts.mailbox_names`, shared with the
webmail's folder form; this module answers it the IMAP way, ``NO [CANNOT]`` as Dovecot does.

Invariant: a name reaches another account's mailbox only through `namespaces` (the
``Other Users/`` and ``Shared/`` prefixes) and only with the RFC 4314 rights the command needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.accounts import mailbox_names as names

from . import namespaces
from .errors import No

if TYPE_CHECKING:
    from mailhouse.store.api import Mailbox

    from .context import SessionContext
    from .namespaces import Resolved

DELIM = names.DELIM
MAX_NAME_OCTETS = names.MAX_NAME_OCTETS
LIST_WILDCARDS = names.LIST_WILDCARDS


def check_name(name: str) -> str:
    """The canonical name or ``NO [CANNOT]`` (RFC 5530 §3; the policy: `accounts.mailbox_names`)."""
    try:
        return names.check_name(name)
    except names.MailboxNameError as e:
        raise No(str(e), "CANNOT") from None


def check_new_name(name: str) -> str:
    """:func:`check_name` for a mailbox about to be created or renamed to: also refuses the
    LIST wildcards, ``NO [CANNOT]`` (RFC 5530 §3)."""
    try:
        return names.check_new_name(name)
    except names.MailboxNameError as e:
        raise No(str(e), "CANNOT") from None


def parents(name: str) -> list[str]:
    """The superior names of ``name``, outermost first (``a/b/c`` → ``a``, ``a/b``)."""
    parts = name.split(DELIM)
    return [DELIM.join(parts[:i]) for i in range(1, len(parts))]


async def get_existing(s: SessionContext, name: str, need: str = "r") -> Mailbox:
    """The mailbox ``name`` (personal, or another account's through `namespaces`) on which the
    session holds the RFC 4314 rights NEED, or ``NO [NONEXISTENT]`` / ``NO [NOPERM]``."""
    return (await resolve_existing(s, name, need)).mailbox


async def resolve_existing(s: SessionContext, name: str, need: str = "r") -> Resolved:
    """:func:`get_existing` with the session's rights and its name for the mailbox."""
    return await namespaces.resolve(s, check_name(name), need)
