"""Issue 12 item 6: deadlines, not idle timers; stress mode; unauthenticated SMTP pipelining.

Every test talks to a real listener over a loopback socket and measures when the server ends the
session. Each fails on the code before the change: there the idle timer restarted on every read
(a client trickling one byte every 0.2 s lived for ever), the login phase had the post-login
timers, nothing shortened under load, and ``EHLO x\\r\\nMAIL FROM:<>\\r\\n`` in one packet was answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest

from mailhouse.accounts.passwords import make_credentials
from mailhouse.runtime import LOAD
from mailhouse.services import Services

if TYPE_CHECKING:
    from tests.runtime.conftest import Listen

PASSWORD = "deadline-pw"


async def _closed_after(reader: asyncio.StreamReader, start: float, limit: float) -> tuple[float, bytes]:
    """Read until EOF (at most LIMIT s); return (seconds since START, everything read)."""
    got = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(4096):
            got += chunk
    return time.monotonic() - start, got


async def _drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    for i in range(len(data)):
        if writer.is_closing():
            return
        writer.write(data[i : i + 1])
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def test_smtp_command_trickled_byte_by_byte_hits_the_deadline(svc: Services, listen: Listen) -> None:
    svc.cfg.smtp_idle_timeout = 1.0
    svc.cfg.smtp_command_deadline = 1.5
    srv, port = await listen("smtp")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await reader.readline()).startswith(b"220 ")
        start = time.monotonic()
        drip = asyncio.create_task(_drip(writer, b"HELO " + b"a" * 400, 0.2))  # never a line end
        took, got = await _closed_after(reader, start, 6.0)
        drip.cancel()
        assert got.startswith(b"421 4.4.2"), got
        assert 1.3 <= took <= 2.5, took  # the 1.5 s deadline, although a byte arrives every 0.2 s
        writer.close()
    finally:
        srv.close()


async def test_smtp_data_gets_a_size_proportional_allowance(svc: Services, listen: Listen) -> None:
    """A message arriving steadily above ``min_data_rate`` is not cut at the command deadline."""
    svc.cfg.smtp_idle_timeout = 1.0
    svc.cfg.smtp_command_deadline = 0.8
    svc.cfg.smtp_min_data_rate = 500.0
    await svc.store.add_domain("example.org")
    pw_hash, scram = make_credentials(PASSWORD)
    await svc.store.add_account("u@example.org", pw_hash, scram=scram)
    srv, port = await listen("smtp")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO c.test\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        for cmd in (b"MAIL FROM:<a@remote.test>\r\n", b"RCPT TO:<u@example.org>\r\n", b"DATA\r\n"):
            writer.write(cmd)
            assert (await reader.readline())[:1] in (b"2", b"3")
        writer.write(b"Subject: slow\r\n\r\n")
        for _ in range(8):  # 8 KB over 1.6 s: past the 0.8 s deadline, within 0.8 + 8000/500 s
            writer.write(b"x" * 998 + b"\r\n")
            await asyncio.sleep(0.2)
        writer.write(b".\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 "), "message refused"
        writer.close()
    finally:
        srv.close()


async def test_smtp_session_cap_ends_a_busy_session(svc: Services, listen: Listen) -> None:
    svc.cfg.smtp_idle_timeout = 1.0
    svc.cfg.session_timeout = 2.0
    srv, port = await listen("smtp")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()
        await reader.readline()

        async def noops() -> None:
            while not writer.is_closing():
                writer.write(b"NOOP\r\n")
                await asyncio.sleep(0.3)

        task = asyncio.create_task(noops())
        took, got = await _closed_after(reader, start, 6.0)
        task.cancel()
        assert got.rstrip().endswith(b"timeout exceeded") and b"421 4.4.2" in got, got[-200:]
        assert 1.8 <= took <= 3.0, took
        writer.close()
    finally:
        srv.close()


async def test_submission_waits_less_before_auth(svc: Services, listen: Listen) -> None:
    svc.cfg.smtp_idle_timeout = 5.0
    svc.cfg.preauth_timeout = 1.0
    srv, port = await listen("submission")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()
        await reader.readline()
        took, got = await _closed_after(reader, start, 6.0)
        assert got.startswith(b"421 4.4.2"), got
        assert 0.8 <= took <= 2.0, took
        writer.close()
    finally:
        srv.close()


async def _pop3_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    assert (await reader.readline()).startswith(b"+OK")
    writer.write(b"USER p@example.org\r\n")
    assert (await reader.readline()).startswith(b"+OK")
    writer.write(f"PASS {PASSWORD}\r\n".encode())
    line = await reader.readline()
    assert line.startswith(b"+OK"), line


async def test_pop3_preauth_timeout_is_shorter_than_after_login(svc: Services, listen: Listen) -> None:
    svc.cfg.pop3_idle_timeout = 3.0
    svc.cfg.preauth_timeout = 1.0
    await svc.store.add_domain("example.org")
    pw_hash, scram = make_credentials(PASSWORD)
    await svc.store.add_account("p@example.org", pw_hash, scram=scram)
    srv, port = await listen("pop3")
    try:
        # before login: dropped at the 1 s login deadline, even while sending CAPA every 0.3 s
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()

        async def capas() -> None:
            while not writer.is_closing():
                writer.write(b"CAPA\r\n")
                await asyncio.sleep(0.3)

        task = asyncio.create_task(capas())
        took, got = await _closed_after(reader, start, 6.0)
        task.cancel()
        assert b"-ERR" in got.splitlines()[-1], got[-200:]
        assert 0.8 <= took <= 2.0, took
        writer.close()

        # after login: the 3 s autologout timer applies (RFC 1939 §3)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _pop3_login(reader, writer)
        start = time.monotonic()
        took, got = await _closed_after(reader, start, 8.0)
        assert 2.8 <= took <= 4.5, took
        writer.close()
    finally:
        srv.close()


async def test_imap_login_phase_is_capped_though_the_client_keeps_talking(
    svc: Services, listen: Listen
) -> None:
    svc.cfg.preauth_timeout = 1.0
    srv, port = await listen("imap")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()

        async def noops() -> None:
            n = 0
            while not writer.is_closing():
                n += 1
                writer.write(f"a{n} NOOP\r\n".encode())
                await asyncio.sleep(0.3)

        task = asyncio.create_task(noops())
        took, got = await _closed_after(reader, start, 6.0)
        task.cancel()
        assert b"* BYE" in got, got[-200:]
        assert 0.8 <= took <= 2.0, took
        writer.close()
    finally:
        srv.close()


async def test_stress_mode_shortens_timers_and_is_logged(
    svc: Services, listen: Listen, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mailhouse.runtime.connection")
    svc.cfg.smtp_idle_timeout = 5.0
    svc.cfg.stress_timeout = 0.5
    svc.cfg.connection_budget = LOAD.active + 4  # stress above 75 %: from the 4th connection on
    srv, port = await listen("smtp")
    try:
        conns = []
        for _ in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            await r.readline()
            conns.append((r, w))
        await asyncio.sleep(0.8)
        assert not LOAD.stressed
        assert all(not r.at_eof() for r, _ in conns)  # below the threshold: the normal 5 s timer
        start = time.monotonic()
        for _ in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            await r.readline()
            conns.append((r, w))
        stressed = LOAD.stressed
        took, got = await _closed_after(conns[-1][0], start, 4.0)
        assert got.startswith(b"421 4.4.2"), got
        assert took <= 1.5, took  # the stress timer (0.5 s), not the 5 s idle timer
        assert stressed and "entering stress" in caplog.text
        for _, w in conns:
            w.close()
        async with asyncio.timeout(5):
            while LOAD.stressed:
                await asyncio.sleep(0.05)
        assert "leaving stress" in caplog.text
    finally:
        srv.close()


@pytest.mark.parametrize(
    "packet",
    [b"EHLO x.test\r\nMAIL FROM:<>\r\n", b"HELO x.test\r\nNOOP\r\n", b"NOOP\r\nNOOP\r\n"],
)
async def test_smtp_pipelining_before_ehlo_is_refused(svc: Services, listen: Listen, packet: bytes) -> None:
    srv, port = await listen("smtp")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(packet)  # one packet, before the EHLO reply offered PIPELINING
        took, got = await _closed_after(reader, time.monotonic(), 5.0)
        assert got == b"554 5.5.0 Error: SMTP protocol synchronization\r\n", got
        writer.close()
    finally:
        srv.close()


async def test_smtp_pipelining_after_ehlo_still_works(svc: Services, listen: Listen) -> None:
    srv, port = await listen("smtp")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO x.test\r\n")
        ehlo = []
        while not (line := await reader.readline()).startswith(b"250 "):
            ehlo.append(line)
        assert b"250-PIPELINING\r\n" in ehlo
        writer.write(b"MAIL FROM:<>\r\nRSET\r\nNOOP\r\nQUIT\r\n")  # RFC 2920 §3.1
        _, got = await _closed_after(reader, time.monotonic(), 5.0)
        assert got.startswith(b"250 2.1.0") and got.count(b"250 ") == 3 and b"221 " in got, got
        writer.close()
    finally:
        srv.close()
