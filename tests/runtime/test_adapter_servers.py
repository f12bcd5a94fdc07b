"""Each protocol adapter exposes ``Server(svc)`` on the runtime; one IMAP Server per node shares
its change hub and \\Recent registry between imap and imaps (no module global keyed by ``id()``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.config import default_config
from mailhouse.imapserver import server as imap_server
from mailhouse.pop3server import server as pop3_server
from mailhouse.runtime import Limits
from mailhouse.services import Services, build
from mailhouse.smtpserver import server as smtp_server


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    s = await build(default_config(tmp_path))
    yield s
    await s.outbound.pool.close()
    await s.store.close()


async def test_limits_come_from_config(svc: Services) -> None:
    svc.cfg.smtp_idle_timeout = 7.0
    svc.cfg.pop3_idle_timeout = 8.0
    svc.cfg.imap_idle_timeout = 9.0
    svc.cfg.max_message_size = 12345
    smtp = smtp_server.Server(svc).limits()
    pop3 = pop3_server.Server(svc).limits()
    imap = imap_server.Server(svc).limits()
    assert (smtp.idle_timeout, smtp.max_line, smtp.max_message) == (7.0, 512, 12345)
    assert (pop3.idle_timeout, pop3.max_line) == (8.0, 255)
    assert (imap.idle_timeout, imap.max_message) == (9.0, 12345)
    assert all(isinstance(x, Limits) for x in (smtp, pop3, imap))


async def test_every_adapter_listens_through_server(svc: Services) -> None:
    servers = [
        await smtp_server.Server(svc).listen("smtp", "127.0.0.1", 0),
        await smtp_server.Server(svc).listen("submissions", "127.0.0.1", 0),
        await pop3_server.Server(svc).listen("pop3s", "127.0.0.1", 0),
    ]
    imap = imap_server.Server(svc)
    servers += [await imap.listen("imap", "127.0.0.1", 0), await imap.listen("imaps", "127.0.0.1", 0)]
    try:
        for s in servers:
            assert s.is_serving()
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()


async def test_imap_listeners_of_one_server_share_its_hub(svc: Services) -> None:
    shared = imap_server.Server(svc)
    a = await shared.listen("imap", "127.0.0.1", 0)
    b = await shared.listen("imaps", "127.0.0.1", 0)
    other = imap_server.Server(svc)
    assert other.hub is not shared.hub and other.claims is not shared.claims
    assert not hasattr(imap_server, "_hubs") and not hasattr(imap_server, "listen")
    for s in (a, b):
        s.close()
        await s.wait_closed()
