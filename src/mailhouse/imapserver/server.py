"""IMAP listeners: ``imap`` (port 143, STARTTLS) and ``imaps`` (port 993, implicit TLS, RFC 8314).

One asyncio adapter over the sans-IO core ``proto.imap``: :meth:`Server.listen` accepts connections
and runs an :class:`~mailhouse.imapserver.session.IMAPSession` on a :class:`Conn`, the byte
pipe that hides TLS upgrades and COMPRESS=DEFLATE (RFC 4978).

RFCs: RFC 9051 / RFC 3501 (IMAP), RFC 8314 §3.3 (implicit TLS), RFC 9051 §6.2.1 (STARTTLS),
RFC 4978 (COMPRESS=DEFLATE: raw deflate, RFC 1951, both directions, sync flush per write).

Invariants:

* I/O runs on the connection runtime (``mailhouse.runtime``): :class:`Conn` is the session-facing
  view of a :class:`~mailhouse.runtime.Connection`; limits are one :class:`~mailhouse.runtime.Limits`.
* STARTTLS goes through ``Connection.start_tls``: reading is paused and the OK written with no
  await in between, and plaintext pipelined after the command is discarded (together with the
  core's own buffer, see ``session.cmd_starttls``).
* Inflated input is produced at most ``Limits.max_inflate`` octets per read (a deflate bomb
  costs CPU in slices, never memory); the core's line and literal limits then apply.
* Each write with compression on ends with a sync flush, so the client can decode every
  response as soon as it arrives.
* One :class:`Server` per node: its listeners (imap and imaps) share its
  :class:`~mailhouse.imapserver.node.ImapNode` (change hub, \\Recent claims, message cache,
  mailbox indexes, METADATA locks); a second Server (another node) shares none of it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailhouse.config import Listener
from mailhouse.proto.imap.receiver import DEFAULT_MAX_LINE, DEFAULT_MAX_LITERAL
from mailhouse.runtime import Limits, start_listener
from mailhouse.runtime.connlimits import ConnectionGate, Refusal, policy_from_config

from .conn import Conn
from .node import ImapNode
from .session import TLS_HANDSHAKE_TIMEOUT, IMAPSession

if TYPE_CHECKING:
    from mailhouse.services import Services

    from .changes import ChangeHub
    from .selected import RecentClaims

#: Octets of inflated input produced per read (RFC 4978).
MAX_INFLATE = 64 * 1024


#: Issue 12 item 5: the answer at accept time when a connection limit is reached (RFC 9051
#: §7.1.5 BYE; RFC 5530 §3 UNAVAILABLE).
REFUSALS = {r: b"* BYE [UNAVAILABLE] Too many connections\r\n" for r in Refusal}


class Server:
    """The IMAP listeners of one node; imap and imaps share its :class:`ImapNode`."""

    def __init__(self, svc: Services, gate: ConnectionGate | None = None) -> None:
        self.svc = svc
        self.gate = gate or ConnectionGate(policy_from_config(svc.cfg))
        self.node = ImapNode(svc.store)

    @property
    def hub(self) -> ChangeHub:
        return self.node.hub

    @property
    def claims(self) -> RecentClaims:
        return self.node.claims

    def limits(self) -> Limits:
        """Per connection, so a configuration reload applies to new connections."""
        cfg = self.svc.cfg
        return Limits(
            max_line=DEFAULT_MAX_LINE,  # RFC 9051 sets no line limit; the core's
            max_literal=DEFAULT_MAX_LITERAL,  # RFC 7888: literals outside APPEND
            max_message=cfg.max_message_size,  # RFC 7889 APPENDLIMIT
            idle_timeout=cfg.imap_idle_timeout,  # RFC 9051 §5.4: autologout ≥ 30 minutes
            # issue 12 item 6: the login phase is capped (Dovecot's login processes: 3 min);
            # authenticated sessions are not (IDLE keeps them for days), only their idle timer
            session_timeout=None,
            preauth_timeout=cfg.preauth_timeout,
            stress_timeout=cfg.stress_timeout,
            connection_budget=cfg.connection_budget,
            write_stall_timeout=cfg.imap_idle_timeout,
            tls_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            max_inflate=MAX_INFLATE,
        )

    async def listen(self, name: str, host: str, port: int) -> asyncio.base_events.Server:
        svc, node = self.svc, self.node
        return await start_listener(
            host,
            port,
            lambda conn: IMAPSession(svc, node, Conn(conn), name).run(),
            limits=self.limits,
            ssl_ctx=svc.tls if Listener(name).implicit_tls else None,  # RFC 8314 §3.3: implicit TLS
            track=svc.track,
            gate=self.gate,
            service=name,
            refusals=REFUSALS,
        )
