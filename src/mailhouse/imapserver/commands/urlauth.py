"""URLAUTH commands: GENURLAUTH, RESETKEY, URLFETCH (RFC 4467 §7; RFC 5524 URLFETCH items).

Token generation, key handling and URL resolution are ``urlauth.py``'s; this module passes the
logged-in account and the host names a URL of this server may carry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap.commands import GenUrlAuth, ResetKey, UrlFetch

from ..context import Ok
from ..urlauth import FetchRequest, Reply, genurlauth, local_hostnames, resetkey, urlfetch

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


def _answer(s: SessionContext, reply: Reply) -> Ok:
    s.send(reply.data)  # untagged data, then the tagged OK
    return Ok(reply.text, reply.code)


async def cmd_genurlauth(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, GenUrlAuth)
    hosts = local_hostnames(s.cfg.hostname)
    return _answer(
        s, await genurlauth(s.store, s.acc(), cmd.args, hostnames=hosts, locks=s.node.metadata_locks)
    )


async def cmd_resetkey(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, ResetKey)
    return _answer(s, await resetkey(s.store, s.acc(), cmd.args, locks=s.node.metadata_locks))


async def cmd_urlfetch(s: SessionContext, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, UrlFetch)
    # RFC 5524 §4: the typed arguments (plain urls and "(url [BODYPARTSTRUCTURE] [BINARY|BODY])")
    reqs = [
        FetchRequest(
            i.url, binary=i.binary, bodypartstructure=i.bodypartstructure, body=i.body, extended=i.extended
        )
        for i in cmd.args.requests()
    ]
    hosts = local_hostnames(s.cfg.hostname)
    return _answer(s, await urlfetch(s.store, s.acc(), reqs, hostnames=hosts))
