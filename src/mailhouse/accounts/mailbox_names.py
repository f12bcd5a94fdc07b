"""The mailbox naming policy every face shares (IMAP CREATE/RENAME/SELECT…, the webmail's folder
form): the hierarchy delimiter and what a valid name is.

RFCs: RFC 9051 §5.1 (mailbox naming, INBOX case-insensitive, also as a parent), §6.3.4 (the
hierarchy delimiter), §6.3.9 (LIST wildcards).

Policy (:func:`check_name`): hierarchy delimiter ``/``; INBOX is case-insensitive; a name is
refused (`MailboxNameError`) when it is empty, starts with ``/``, has an empty component
(``a//b``), a ``.`` or ``..`` component, a NUL or another control character, or is longer than
:data:`MAX_NAME_OCTETS`. A *new* name (:func:`check_new_name`: created, or renamed to) may in
addition not contain the LIST wildcards ``%`` or ``*`` (RFC 9051 §6.3.9: they are pattern
characters, so such a mailbox could never be listed by its own name alone), as Dovecot
refuses them; existing names are still found. Each face turns the error into its own answer
(IMAP ``NO [CANNOT]``, RFC 5530 §3; the webmail a 400).
"""

from __future__ import annotations

import re


class MailboxNameError(ValueError):
    """A mailbox name the policy refuses; the text says why."""


DELIM = "/"
MAX_NAME_OCTETS = 1024  # whole name; a component is limited by MAX_COMPONENT_OCTETS
MAX_COMPONENT_OCTETS = 255  # common file-system limit; keeps names portable to Maildir tools
MAX_DEPTH = 32  # hierarchy levels
_CTL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    """The canonical name, or `MailboxNameError` (see the module docstring)."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX" + DELIM):
        name = "INBOX" + name[5:]  # RFC 9051 §5.1: INBOX is case-insensitive, also as a parent
    if not name:
        raise MailboxNameError("Empty mailbox name")
    if _CTL.search(name):
        raise MailboxNameError("Control characters are not allowed in mailbox names")
    if name.startswith(DELIM):
        raise MailboxNameError("Mailbox names cannot start with the hierarchy delimiter")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        raise MailboxNameError("Mailbox name too long")
    parts = name.split(DELIM)
    if len(parts) > MAX_DEPTH:
        raise MailboxNameError("Mailbox hierarchy too deep")
    for p in parts:
        if p in ("", ".", ".."):
            raise MailboxNameError("Invalid mailbox name component")
        if len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_OCTETS:
            raise MailboxNameError("Mailbox name component too long")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise MailboxNameError("Invalid characters in mailbox name") from None
    return name


# RFC 9051 §6.3.9 / §9 list-wildcards = "%" / "*"
LIST_WILDCARDS = frozenset("%*")


def check_new_name(name: str) -> str:
    """:func:`check_name` for a mailbox about to be created or renamed to: also refuses the
    LIST wildcards (module docstring)."""
    name = check_name(name)
    bad = sorted(LIST_WILDCARDS.intersection(name))
    if bad:
        raise MailboxNameError(f"Character not allowed in mailbox name: '{bad[0]}'")
    return name
