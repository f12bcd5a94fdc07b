"""Builders shared by the spam tests: a rule context over a message, a quick run of one rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from mailhouse.spam.rules import Context, Hit, Rule
from mailhouse.store.spool import SpooledMessage

HOST = "mx.ours.test"
GOOD_HEAD = (
    b"From: Ann <ann@sender.test>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: hello\r\n"
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <abc.123@sender.test>\r\n"
)


def ctx(
    message: bytes | SpooledMessage,
    *,
    ip: str = "192.0.2.10",
    helo: str = "mail.sender.test",
    mail_from: str = "ann@sender.test",
    budget: float = 3.0,
    now: float | None = None,
) -> Context:
    msg = message if isinstance(message, SpooledMessage) else SpooledMessage.from_bytes(message)
    clock_now = now if now is not None else 1796637600.0  # 2026-12-07 10:00 UTC
    return Context(
        ip=ip,
        helo=helo,
        mail_from=mail_from,
        recipients=("bob@example.org",),
        message=msg,
        authserv_id=HOST,
        deadline=time.monotonic() + budget,
        clock=lambda: clock_now,
    )


def run(rule: Rule, c: Context) -> list[Hit]:
    return asyncio.run(rule.check(c))


def names(hits: Sequence[Hit]) -> set[str]:
    return {h.name for h in hits}
