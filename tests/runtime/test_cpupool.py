"""runtime/cpupool: results, typed errors across the process boundary, the budget kill, overload."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from mailhouse.runtime.cpupool import CpuPool, RemoteError, WorkerDied
from mailhouse.runtime.offload import Overloaded, TimedOut


class JobError(ValueError):
    """A typed error raised in the worker."""


def pid_and_sum(xs: list[int]) -> tuple[int, int]:
    return os.getpid(), sum(xs)


def fail(text: str) -> None:
    raise JobError(text)


class Unpicklable(Exception):
    def __reduce__(self) -> object:
        raise TypeError("no")


def fail_unpicklable() -> None:
    raise Unpicklable("odd")


def spin(seconds: float) -> int:
    """Burn CPU (pure Python, holds the GIL) for SECONDS; returns the worker's pid."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return os.getpid()


def niceness() -> int:
    return os.nice(0)


def die() -> None:
    os._exit(3)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not reaped yet counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


async def test_result_runs_in_another_process() -> None:
    pool = CpuPool(workers=1, queue=2, budget=30)
    try:
        pid, total = await pool.run(pid_and_sum, [1, 2, 3])
        assert total == 6 and pid != os.getpid()
        pid2, _ = await pool.run(pid_and_sum, [])
        assert pid2 == pid  # the worker is reused
    finally:
        await pool.aclose()


async def test_workers_run_below_the_event_loop() -> None:
    """The jobs yield the CPU to the serving process: niceness + WORKER_NICE, SCHED_BATCH."""
    from mailhouse.runtime.cpupool import WORKER_NICE

    pool = CpuPool(workers=1, queue=0, budget=30)
    try:
        assert await pool.run(niceness) == min(19, os.nice(0) + WORKER_NICE)
    finally:
        await pool.aclose()


async def test_exceptions_cross_typed() -> None:
    pool = CpuPool(workers=1, queue=0, budget=30)
    try:
        with pytest.raises(JobError, match="bad input"):
            await pool.run(fail, "bad input")
        with pytest.raises(RemoteError, match="Unpicklable"):
            await pool.run(fail_unpicklable)
        _, total = await pool.run(pid_and_sum, [4])  # the worker survived both
        assert total == 4
    finally:
        await pool.aclose()


async def test_budget_kills_the_worker_and_a_new_one_serves() -> None:
    pool = CpuPool(workers=1, queue=1, budget=30)
    try:
        first = await pool.run(spin, 0.0)
        with pytest.raises(TimedOut):
            await pool.run(spin, 60.0, budget=0.5)
        assert pool.killed == 1
        for _ in range(100):  # reaped by the loop's child watcher
            if not alive(first):
                break
            await asyncio.sleep(0.05)
        assert not alive(first), "the runaway job's process still runs"
        second = await pool.run(spin, 0.0)
        assert second != first
    finally:
        await pool.aclose()


async def test_cancelled_caller_kills_its_job() -> None:
    pool = CpuPool(workers=1, queue=1, budget=30)
    try:
        pid = await pool.run(spin, 0.0)
        task = asyncio.ensure_future(pool.run(spin, 60.0))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if not alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not alive(pid)
        assert pool.in_flight == 0
    finally:
        await pool.aclose()


async def test_overload_beyond_workers_plus_queue() -> None:
    pool = CpuPool(workers=1, queue=1, budget=30)
    try:
        await pool.run(spin, 0.0)  # started
        running = [asyncio.ensure_future(pool.run(spin, 1.0)) for _ in range(2)]
        await asyncio.sleep(0)
        assert pool.in_flight == 2
        with pytest.raises(Overloaded):
            await pool.run(spin, 0.0)
        await asyncio.gather(*running)
        assert pool.in_flight == 0
    finally:
        await pool.aclose()


async def test_dead_worker_is_an_error_then_replaced() -> None:
    pool = CpuPool(workers=1, queue=0, budget=30)
    try:
        with pytest.raises(WorkerDied):
            await pool.run(die)
        _, total = await pool.run(pid_and_sum, [2, 2])
        assert total == 4
    finally:
        await pool.aclose()


async def test_close_kills_workers_and_refuses() -> None:
    pool = CpuPool(workers=2, queue=0, budget=30)
    pids = set(await asyncio.gather(pool.run(spin, 0.3), pool.run(spin, 0.3)))
    await pool.aclose()
    assert not any(alive(p) for p in pids)
    with pytest.raises(Overloaded):
        await pool.run(spin, 0.0)
