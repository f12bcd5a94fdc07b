"""IMAP grammar: the ACL commands (RFC 4314 §3, §6).

``SETACL mailbox SP identifier SP mod-rights``, ``DELETEACL mailbox SP identifier``,
``GETACL mailbox``, ``LISTRIGHTS mailbox SP identifier``, ``MYRIGHTS mailbox``, where
``identifier = astring`` and ``mod-rights = astring`` (RFC 4314 §6: ``rights`` optionally
preceded by ``+`` or ``-``).

The ``parse_*`` functions follow the conventions of :mod:`~mailhouse.proto.imap.grammar`. Which
letters are rights and which identifiers exist is policy (``store.acl``), not syntax: the
grammar takes any astring.
"""

from __future__ import annotations

from mailhouse.proto.imap.commands import Acl
from mailhouse.proto.imap.reader import Reader

MAX_ACL_ARG = 512  # identifier / mod-rights octets: an address is at most 320 (RFC 5321 §4.5.3.1)


def _arg(r: Reader) -> str:
    r.sp()
    v = r.astring_str()
    if len(v) > MAX_ACL_ARG:
        r.error("Argument too long")
    return v


def parse_setacl(r: Reader, uid: bool) -> Acl:
    r.sp()
    mailbox = r.mailbox()
    ident = _arg(r)
    return Acl(mailbox, ident, _arg(r))  # RFC 4314 §3.1


def parse_deleteacl(r: Reader, uid: bool) -> Acl:
    r.sp()
    mailbox = r.mailbox()
    return Acl(mailbox, _arg(r))  # RFC 4314 §3.2


def parse_getacl(r: Reader, uid: bool) -> Acl:
    r.sp()
    return Acl(r.mailbox())  # RFC 4314 §3.3 (MYRIGHTS §3.5: the same shape)


def parse_listrights(r: Reader, uid: bool) -> Acl:
    r.sp()
    mailbox = r.mailbox()
    return Acl(mailbox, _arg(r))  # RFC 4314 §3.4
