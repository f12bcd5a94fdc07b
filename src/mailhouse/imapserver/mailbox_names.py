"""Mailbox naming policy: the hierarchy delimiter, what a valid name is, looking a name up.

RFCs: RFC 9051 §5.1 (mailbox naming, INBOX case-insensitive, also as a parent), §6.3.4 (the
hierarchy delimiter); RFC 5530 §3 (``NO [CANNOT]``, ``NO [NONEXISTENT]``).

Policy (:func:`check_name`): hierarchy delimiter ``/``; INBOX is case-insensitive (the parser
already maps it to ``INBOX``); a name is refused with ``NO [CANNOT]`` when it is empty, starts
with ``/``, has an empty component (``a//b``), a ``.`` or ``..`` component, a NUL or another
control character, or is longer than :data:`MAX_NAME_OCTETS`. A *new* name (CREATE, the target
of RENAME: :func:`check_new_name`) may in addition not contain the LIST wildcards ``%`` or ``*``
(RFC 9051 §6.3.9: they are pattern characters, so such a mailbox could never be listed by its
own name alone), refused ``NO [CANNOT]`` as Dovecot does; existing names are still found.

Invariant: names are looked up only inside the logged-in account (every store call carries
its account id), so no spelling reaches another account.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import No

if TYPE_CHECKING:
    from mailhouse.store.api import Mailbox

    from .context import SessionContext

DELIM = "/"
MAX_NAME_OCTETS = 1024  # whole name; a component is limited by MAX_COMPONENT_OCTETS
MAX_COMPONENT_OCTETS = 255  # common file-system limit; keeps names portable to Maildir tools
MAX_DEPTH = 32  # hierarchy levels
_CTL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    """The canonical name or ``NO [CANNOT]`` (see the module docstring)."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX" + DELIM):
        name = "INBOX" + name[5:]  # RFC 9051 §5.1: INBOX is case-insensitive, also as a parent
    if not name:
        raise No("Empty mailbox name", "CANNOT")
    if _CTL.search(name):
        raise No("Control characters are not allowed in mailbox names", "CANNOT")
    if name.startswith(DELIM):
        raise No("Mailbox names cannot start with the hierarchy delimiter", "CANNOT")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        raise No("Mailbox name too long", "CANNOT")
    parts = name.split(DELIM)
    if len(parts) > MAX_DEPTH:
        raise No("Mailbox hierarchy too deep", "CANNOT")
    for p in parts:
        if p in ("", ".", ".."):
            raise No("Invalid mailbox name component", "CANNOT")
        if len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_OCTETS:
            raise No("Mailbox name component too long", "CANNOT")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise No("Invalid characters in mailbox name", "CANNOT") from None
    return name


# RFC 9051 §6.3.9 / §9 list-wildcards = "%" / "*"
LIST_WILDCARDS = frozenset("%*")


def check_new_name(name: str) -> str:
    """:func:`check_name` for a mailbox about to be created or renamed to: also refuses the
    LIST wildcards (module docstring), ``NO [CANNOT]`` (RFC 5530 §3)."""
    name = check_name(name)
    bad = sorted(LIST_WILDCARDS.intersection(name))
    if bad:
        raise No(f"Character not allowed in mailbox name: '{bad[0]}'", "CANNOT")
    return name


def parents(name: str) -> list[str]:
    """The superior names of ``name``, outermost first (``a/b/c`` → ``a``, ``a/b``)."""
    parts = name.split(DELIM)
    return [DELIM.join(parts[:i]) for i in range(1, len(parts))]


async def get_existing(s: SessionContext, name: str) -> Mailbox:
    """The logged-in account's mailbox ``name`` or ``NO [NONEXISTENT]``."""
    name = check_name(name)
    mb = await s.store.get_mailbox(s.acc().id, name)
    if mb is None:
        raise No("Mailbox does not exist", "NONEXISTENT")  # RFC 5530 §3
    return mb
