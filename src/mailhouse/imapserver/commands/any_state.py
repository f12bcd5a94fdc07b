"""Commands valid in any state: CAPABILITY, NOOP, LOGOUT, ID.

RFCs: RFC 9051 §6.1.1 (CAPABILITY), §6.1.2 (NOOP: updates are sent by the dispatcher),
§6.1.3 (LOGOUT: untagged BYE, then the tagged OK, then close); RFC 2971 (ID).

Invariant: the client's ID parameters are logged printable and bounded, never raw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.log import safe
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Id

from ..capabilities import capabilities
from ..context import IMPLEMENTATION, Ok, State

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


async def cmd_capability(s: SessionContext, cmd: Command) -> Ok | None:
    s.send(response.capability(capabilities(s)))
    return None


async def cmd_noop(s: SessionContext, cmd: Command) -> Ok | None:
    return None  # updates are sent by the dispatcher (RFC 9051 §6.1.2)


async def cmd_logout(s: SessionContext, cmd: Command) -> Ok | None:
    s.send(response.untagged_status("BYE", f"{IMPLEMENTATION} logging out"))
    s.state = State.LOGOUT
    s.closing = True
    return Ok("LOGOUT completed")


async def cmd_id(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Id)
    if args.params:  # RFC 2971 §3.1: log the client's identity (printable, bounded)
        s.log.info("client id: %s", safe(" ".join(f"{k!r}={v!r}" for k, v in args.params[:10]), 300))
    s.send(response.untagged("ID", ["name", IMPLEMENTATION, "vendor", IMPLEMENTATION]))
    return None
