"""What every IMAP command handler shares: the session context it receives, its result, the states.

RFCs: RFC 9051 §3 (connection states: not authenticated, authenticated, selected, logout),
§7.1 (the tagged status a handler's :class:`Ok` becomes).

This module sits below the handlers (``commands/``) and the session (``session.py``): handlers
are typed against :class:`SessionContext`, a Protocol that the live
:class:`~mailhouse.imapserver.session.IMAPSession` satisfies, so no handler imports the session
and the session imports the handlers only through the one command table (``commands``).

Invariants: nothing here does I/O; :class:`Transport` is the byte pipe the session runs on
(``server.Conn`` today), described here so that neither the session nor a handler needs the
listener module.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from mailhouse.config import Config
    from mailhouse.log import ConnLogger
    from mailhouse.proto.imap import Command, IMAPServerProtocol
    from mailhouse.services import Services
    from mailhouse.store.api import Account, Store

    from .changes import Listener
    from .node import ImapNode
    from .notify_state import NotifyState
    from .selected import SelectedMailbox

IMPLEMENTATION = "Mailhouse"
"""Server name in the greeting, ``ID`` (RFC 2971) and ``BYE`` on LOGOUT."""
TLS_HANDSHAKE_TIMEOUT = 30.0
"""Seconds a STARTTLS / implicit-TLS handshake may take (RFC 8314 §3.3 / RFC 9051 §6.2.1)."""


class State(enum.Enum):
    """RFC 9051 §3: the connection states (the command table gates commands by these)."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class Ok:
    """What a handler returns for its tagged OK (None means ``OK <NAME> completed``)."""

    text: str
    code: str | None = None


class Transport(Protocol):
    """The client byte stream: plain, TLS, optionally deflate-compressed (RFC 4978)."""

    @property
    def compressed(self) -> bool: ...

    def is_tls(self) -> bool: ...

    def peer_ip(self) -> str: ...

    async def read(self) -> bytes: ...

    async def pace(self) -> None: ...  # one command run (the read budget, issue 12 item 1)

    async def write(self, data: bytes) -> None: ...

    def start_compress(self, already_received: bytes) -> None: ...

    def admit_login(self, account: str) -> bool: ...

    def release_login(self) -> None: ...

    async def start_tls(self, reply: bytes, ctx: ssl.SSLContext, timeout: float) -> int: ...

    async def close(self) -> None: ...


class SessionContext(Protocol):
    """The live session as a handler sees it (implemented by ``session.IMAPSession``).

    Handlers queue output with :meth:`send` (never write to the socket themselves), change the
    state and selected mailbox through these attributes, and raise ``errors`` exceptions.
    """

    svc: Services
    cfg: Config
    store: Store
    node: ImapNode  # what the node's sessions share: change hub, \Recent, caches, locks
    conn: Transport
    tls: bool
    ip: str
    log: ConnLogger
    state: State
    account: Account | None
    enabled: set[str]
    selected: SelectedMailbox | None
    notify: NotifyState | None
    _notify_listener: Listener | None
    closing: bool
    core: IMAPServerProtocol

    @property
    def rev2(self) -> bool: ...

    @property
    def utf8(self) -> bool: ...

    @property
    def condstore(self) -> bool: ...

    @property
    def qresync(self) -> bool: ...

    def login_allowed(self) -> bool: ...

    def acc(self) -> Account: ...

    def send(self, data: bytes) -> None: ...

    def tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None: ...

    async def flush(self) -> None: ...

    async def maybe_flush(self) -> None: ...

    async def wait_input(self, wake: asyncio.Event | None = None) -> bytes | None: ...

    async def sync(self, *, allow_expunge: bool) -> None: ...


Handler = Callable[[SessionContext, "Command"], Awaitable["Ok | None"]]
"""A command handler: the session context and the parsed command; returns its tagged OK (None:
``OK <NAME> completed``) or raises an ``errors.ImapError`` / store error."""
