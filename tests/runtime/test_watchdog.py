"""The loop-lag watchdog (runtime.watchdog) and the bounded offload pool (runtime.offload)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from mailhouse.runtime.offload import Offload, Overloaded, TimedOut
from mailhouse.runtime.watchdog import Watchdog


def deliberately_blocking_callback() -> None:
    time.sleep(0.4)


async def test_watchdog_names_the_blocking_callback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailhouse.runtime.watchdog")
    wd = Watchdog(threshold=0.1, interval=0.02)
    wd.start()
    try:
        await asyncio.sleep(0.1)
        assert wd.stalls == 0
        asyncio.get_running_loop().call_soon(deliberately_blocking_callback)
        await asyncio.sleep(0.2)
    finally:
        await wd.stop()
    assert wd.stalls == 1 and wd.max_lag >= 0.3
    msgs = [r.getMessage() for r in caplog.records]
    assert any("event loop blocked for" in m and "deliberately_blocking_callback" in m for m in msgs), msgs


async def test_watchdog_names_the_blocking_task(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailhouse.runtime.watchdog")
    wd = Watchdog(threshold=0.1, interval=0.02)
    wd.start()

    async def handler() -> None:
        time.sleep(0.3)

    try:
        await asyncio.create_task(handler(), name="imap-session-7")
        await asyncio.sleep(0.1)
    finally:
        await wd.stop()
    assert any("task imap-session-7" in r.getMessage() for r in caplog.records), caplog.records


async def test_watchdog_quiet_on_an_idle_loop(caplog: pytest.LogCaptureFixture) -> None:
    wd = Watchdog(threshold=0.1, interval=0.02)
    wd.start()
    await asyncio.sleep(0.3)
    await wd.stop()
    assert wd.stalls == 0 and not [r for r in caplog.records if r.name == "mailhouse.runtime.watchdog"]


async def test_offload_runs_off_the_loop_and_bounds_time_and_queue() -> None:
    pool = Offload(workers=1, queue=1, budget=0.2, name="t")
    assert await pool.run(sum, [1, 2, 3]) == 6
    gate = threading.Event()
    first = asyncio.ensure_future(pool.run(gate.wait, 5))
    second = asyncio.ensure_future(pool.run(gate.wait, 5))
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded):
        await pool.run(sum, [1])
    with pytest.raises(TimedOut):
        await first
    with pytest.raises(TimedOut):
        await second  # it waited behind `first`: cancelled before it ran
    assert pool.in_flight == 1  # the running job keeps its slot until it really ends
    gate.set()
    for _ in range(50):
        if pool.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert pool.in_flight == 0
    assert await pool.run(sum, [4]) == 4
    pool.close()
