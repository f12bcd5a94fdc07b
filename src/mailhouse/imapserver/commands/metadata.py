"""METADATA commands: GETMETADATA, SETMETADATA (RFC 5464 §4.2-4.3), over ``metadata.py``.

Entry names, limits (``[METADATA MAXSIZE]``, ``[METADATA TOOMANY]``) and the private/shared
scopes are ``metadata.py``'s; this module passes the logged-in account and the UTF8 mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap.commands import GetMetadata, SetMetadata

from ..context import Ok
from ..metadata import Reply, getmetadata, setmetadata

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


def _answer(s: SessionContext, reply: Reply) -> Ok:
    s.send(reply.data)  # untagged data, then the tagged OK
    return Ok(reply.text, reply.code)


async def cmd_getmetadata(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, GetMetadata)
    return _answer(s, await getmetadata(s.store, s.acc(), cmd.args, utf8=s.utf8))


async def cmd_setmetadata(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, SetMetadata)
    return _answer(s, await setmetadata(s.store, s.acc(), cmd.args, locks=s.node.metadata_locks))
