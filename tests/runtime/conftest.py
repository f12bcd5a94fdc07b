"""Run the runtime tests on both event loops Mailhouse uses: asyncio's own and uvloop (``serve``);
the node (`svc`) and the listeners (`listen`) the connection-limit and deadline tests share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvloop

from mailhouse.config import default_config
from mailhouse.imapserver import server as imap_server
from mailhouse.pop3server import server as pop3_server
from mailhouse.services import Services, build
from mailhouse.smtpserver import server as smtp_server

#: ``await listen(kind)``: a listener of KIND ("smtp", "submission", "pop3", "imap") on a free
#: loopback port of the test's node, and its port.
Listen = Callable[[str], Awaitable[tuple[asyncio.base_events.Server, int]]]


@pytest.hookimpl(optionalhook=True)  # pytest-asyncio ≥ 1.4; older versions run the default loop only
def pytest_asyncio_loop_factories(
    config: Any, item: Any
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    """A node with no pregreet wait, no inbound DNS checks and plaintext AUTH allowed."""
    cfg = default_config(tmp_path)
    cfg.pregreet_wait = 0.0
    cfg.verify_inbound = False
    cfg.allow_plaintext_auth = True
    s = await build(cfg)
    yield s
    await s.outbound.pool.close()
    await s.store.close()


@pytest.fixture
def listen(svc: Services) -> Listen:
    async def start(kind: str) -> tuple[asyncio.base_events.Server, int]:
        if kind in ("smtp", "submission"):
            srv = await smtp_server.Server(svc).listen(kind, "127.0.0.1", 0)
        elif kind == "pop3":
            srv = await pop3_server.Server(svc).listen("pop3", "127.0.0.1", 0)
        else:
            srv = await imap_server.Server(svc).listen("imap", "127.0.0.1", 0)
        return srv, srv.sockets[0].getsockname()[1]

    return start
