"""What one message costs on port 25 besides its bytes (issue 12 item 8: one connection per
message must be cheap). Log lines below the configured level are not prepared: escaping an
address for a DEBUG line that is never written is work on every MAIL and RCPT."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.config import default_config
from mailhouse.log import safe
from mailhouse.services import Services, build
from mailhouse.smtpserver import server as smtp_server


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    cfg = default_config(tmp_path)
    cfg.pregreet_wait = 0.0
    cfg.verify_inbound = False
    s = await build(cfg)
    await s.store.add_domain("example.org")
    await s.store.add_account("alice@example.org", "x")
    yield s
    await s.outbound.pool.close()
    await s.store.close()


def _send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.sendmail(
            "bob@remote.test",
            ["alice@example.org"],
            b"Subject: hi\r\nMessage-ID: <m1@remote.test>\r\n\r\nhello\r\n",
        )


async def test_debug_lines_cost_nothing_at_info(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    escaped: list[str] = []

    def counting_safe(value: bytes | str, limit: int = 200) -> str:
        out = safe(value, limit)
        escaped.append(out)
        return out

    monkeypatch.setattr(smtp_server, "safe", counting_safe)
    logging.getLogger("mailhouse").setLevel(logging.INFO)
    srv = await smtp_server.Server(svc).listen("smtp", "127.0.0.1", 0)
    try:
        await asyncio.to_thread(_send, srv.sockets[0].getsockname()[1])
    finally:
        srv.close()
    # the INFO lines only: the spam verdict ("spam <id> score=…") and "queued as … from=<…> …
    # message-id=<…>"; none of MAIL's or RCPT's DEBUG arguments
    assert escaped[1:] == ["bob@remote.test", "<m1@remote.test>"] and escaped[0].startswith("score="), escaped
