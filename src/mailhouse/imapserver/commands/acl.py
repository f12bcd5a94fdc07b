"""ACL commands: SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS (RFC 4314 §3).

RFCs: RFC 4314 §3.1-3.5 (the commands), §3.6-3.8 (ACL, LISTRIGHTS, MYRIGHTS responses), §4
(SETACL/DELETEACL/GETACL/LISTRIGHTS need ``a``; MYRIGHTS any right), §2.1.1 (``c``/``d`` in
responses under RIGHTS=texk), RFC 5530 §3 (``NO [NOPERM]``, ``NO [CANNOT]``).

The rights model (identifiers, normalisation, the owner's implicit rights) is `store.acl`; the
name resolution and the NOPERM / NONEXISTENT rule is `namespaces`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Acl
from mailhouse.store.acl import ALL_RIGHTS, AclError, check_identifier, with_obsolete

from ..errors import Bad, No
from ..mailbox_names import resolve_existing
from ..namespaces import missing

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext
    from ..namespaces import Resolved


async def _owner(s: SessionContext, res: Resolved) -> str:
    if res.mailbox.account_id == s.acc().id:
        return s.acc().address.lower()
    owner = await s.store.get_account_by_id(res.mailbox.account_id)
    return owner.address.lower() if owner is not None else ""


async def _target(s: SessionContext, cmd: Command, need: str) -> tuple[Acl, Resolved, str]:
    args = cmd.args
    assert isinstance(args, Acl)
    res = await resolve_existing(s, args.mailbox, need)
    ident = ""
    if args.identifier is not None:
        try:
            ident = check_identifier(args.identifier)
        except AclError as e:
            raise Bad(f"Invalid identifier: {e}") from None
    return args, res, ident


async def cmd_setacl(s: SessionContext, cmd: Command) -> None:
    args, res, ident = await _target(s, cmd, "a")  # RFC 4314 §4: SETACL needs a
    assert args.rights is not None
    if ident == await _owner(s, res):
        raise No("The owner's rights cannot be changed", "CANNOT")  # RFC 4314 §3.1 MAY refuse
    try:
        await s.store.set_acl(res.mailbox.id, ident, args.rights)
    except AclError as e:
        raise Bad(f"Invalid rights: {e}") from None  # RFC 4314 §3.1: unknown right → BAD


async def cmd_deleteacl(s: SessionContext, cmd: Command) -> None:
    args, res, ident = await _target(s, cmd, "a")
    if ident == await _owner(s, res):
        raise No("The owner's rights cannot be changed", "CANNOT")
    await s.store.delete_acl(res.mailbox.id, ident)  # RFC 4314 §3.2: no entry is not an error


async def cmd_getacl(s: SessionContext, cmd: Command) -> None:
    _args, res, _ = await _target(s, cmd, "a")
    # RFC 4314 §3.6: * ACL mailbox identifier rights ...; the owner's implicit rights first
    values: list[response.Value] = [response.MailboxName(res.name)]
    values += [response.AString(await _owner(s, res)), response.AString(with_obsolete(ALL_RIGHTS))]
    for e in await s.store.get_acl(res.mailbox.id):
        values += [response.AString(e.identifier), response.AString(with_obsolete(e.rights))]
    s.send(response.untagged("ACL", *values, utf8=s.utf8))


async def cmd_listrights(s: SessionContext, cmd: Command) -> None:
    _args, res, ident = await _target(s, cmd, "a")
    head: list[response.Value] = [response.MailboxName(res.name), response.AString(ident)]
    if ident == await _owner(s, res):  # RFC 4314 §3.7: the owner always holds every right
        rights: list[response.Value] = [response.AString(with_obsolete(ALL_RIGHTS))]
    else:  # no right is implied; each may be granted alone (c and d: §2.1.1)
        rights = [response.AString("")] + [response.Atom(r) for r in with_obsolete(ALL_RIGHTS)]
    s.send(response.untagged("LISTRIGHTS", *head, *rights, utf8=s.utf8))


async def cmd_myrights(s: SessionContext, cmd: Command) -> None:
    _args, res, _ = await _target(s, cmd, "")
    if not res.rights:
        raise missing()  # RFC 4314 §4: MYRIGHTS needs any right; none = not visible
    s.send(
        response.untagged(
            "MYRIGHTS",
            response.MailboxName(res.name),
            response.AString(with_obsolete(res.rights)),
            utf8=s.utf8,
        )
    )
