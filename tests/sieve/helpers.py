"""Shared helpers for the Sieve evaluator tests."""

from __future__ import annotations

import asyncio
import datetime as dt

from mailhouse.sieve import Script, SieveLimits, SieveResult, SimpleContext, compile_script, evaluate
from mailhouse.sieve.script import Location

MSG = (
    b"Return-Path: <alice@example.org>\r\n"
    b"Received: from mx.example.org by mx.example.com; Tue, 08 Dec 2026 09:00:00 +0000\r\n"
    b"From: Alice Example <alice+news@example.org>\r\n"
    b"To: Bob <bob@example.com>, carol@example.net\r\n"
    b"Cc: dave@example.com\r\n"
    b"Subject: Hello World =?utf-8?q?caf=C3=A9?=\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"Date: Tue, 08 Dec 2026 10:11:12 +0100\r\n"
    b"X-Spam-Score: 3\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=b1\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Meeting at caf=C3=A9 tomorrow, 42 people.\r\n"
    b"--b1\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>Meeting at <b>cafe</b> tomorrow</p>\r\n"
    b"--b1--\r\n"
)

NOW = dt.datetime(2026, 12, 8, 12, 30, 45, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def ctx(msg: bytes = MSG, **kw: object) -> SimpleContext:
    base: dict[str, object] = {
        "envelope_from": "alice+news@example.org",
        "envelope_to": "bob+sieve@example.com",
        "original_recipient": "bob@example.com",
        "user_addresses": ("bob@example.com",),
        "now": NOW,
        "environment": {"domain": "example.com", "host": "mx.example.com", "phase": "during"},
    }
    base.update(kw)
    return SimpleContext(msg, **base)  # type: ignore[arg-type]


def run(
    script: str | Script,
    context: SimpleContext | None = None,
    *,
    includes: dict[tuple[Location, str], Script] | None = None,
    limits: SieveLimits = SieveLimits(),
) -> SieveResult:
    s = compile_script(script, limits=limits) if isinstance(script, str) else script
    return asyncio.run(evaluate(s, context or ctx(), includes=includes, limits=limits))
