"""IDLE (RFC 2177; RFC 9051 §6.3.13): push mailbox updates until the client sends DONE.

While idling, the session waits on both the client and the account's change-feed listener:
a wake-up sends the selected mailbox's updates (IDLE counts as a command in progress, so
EXPUNGE is allowed, RFC 9051 §7) or, with NOTIFY active, what NOTIFY asked for (RFC 5465 §5).

Invariants: the listener is always unregistered, however IDLE ends; a line other than DONE
ends IDLE with the core's tagged BAD (the handler answers itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap import NEED_DATA, CommandError, IdleDone, response

from ..context import Ok
from ..errors import AlreadyAnswered, Bad
from ..updates import deliver

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


async def cmd_idle(s: SessionContext, cmd: Command) -> Ok | None:
    s.send(response.continuation("idling"))  # RFC 2177 §3
    await s.flush()
    s.core.begin_idle(cmd.tag)
    # a shared selected mailbox changes in its owner's account: listen there (RFC 4314: r, checked at SELECT)
    lst = s.node.hub.listen(s.selected.mailbox.account_id if s.selected is not None else s.acc().id)
    try:
        if s.selected is not None:
            await s.sync(allow_expunge=True)
            await s.flush()
        while not s.closing:
            ev = s.core.next_event()
            if isinstance(ev, IdleDone):
                return Ok("IDLE terminated")
            if isinstance(ev, CommandError):
                s.send(ev.reply_bytes)  # tagged BAD "Expected DONE": IDLE is over
                raise AlreadyAnswered()
            if ev is not NEED_DATA:
                raise Bad("Unexpected data during IDLE")
            data = await s.wait_input(lst.event)
            if data is None:
                lst.drain()
                if s.notify is not None:
                    await deliver(s, s._notify_listener or lst, in_command=True)
                elif s.selected is not None:
                    await s.sync(allow_expunge=True)  # IDLE is a command in progress
                await s.flush()
                continue
            if not data:
                raise ConnectionError("closed during IDLE")
            s.core.receive_data(data)
        raise AlreadyAnswered()
    finally:
        s.node.hub.unlisten(lst)
