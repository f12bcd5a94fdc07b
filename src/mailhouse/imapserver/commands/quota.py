"""QUOTA commands: GETQUOTA, GETQUOTAROOT, SETQUOTA (RFC 9208 §4.1), over ``quota.py``.

GETQUOTAROOT names a mailbox, which must exist (``NO [NONEXISTENT]``, RFC 9208 §4.1.2 /
RFC 5530 §3); the rules (one root per account, admin-only SETQUOTA) are ``quota.py``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap.commands import GetQuota, MailboxArg, SetQuota

from ..context import Ok
from ..mailbox_names import get_existing
from ..quota import Reply, getquota, getquotaroot, setquota

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


def _answer(s: SessionContext, reply: Reply) -> Ok:
    s.send(reply.data)  # untagged data, then the tagged OK
    return Ok(reply.text, reply.code)


async def cmd_getquota(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, GetQuota)
    return _answer(s, await getquota(s.store, s.acc(), cmd.args))


async def cmd_getquotaroot(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, MailboxArg)
    await get_existing(s, cmd.args.mailbox)
    return _answer(s, await getquotaroot(s.store, s.acc(), cmd.args, utf8=s.utf8))


async def cmd_setquota(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, SetQuota)
    return _answer(s, await setquota(s.store, s.acc(), cmd.args))
