"""A small bounded worker pool for CPU-heavy pure functions that must not run on the event loop.

One node serves every connection from ONE event loop; a single slow call (sanitising a hostile
HTML mail, say) freezes all sessions of the node for as long as it runs. `Offload.run` moves such
a call to a worker thread and bounds everything about it:
- at most `workers` calls run at once and at most `queue` more wait; a call beyond that fails at
  once with `Overloaded` instead of growing an unbounded backlog;
- the caller waits at most `budget` seconds and then gets `TimedOut` (the page can fall back to a
  cheaper rendering). A thread cannot be killed: the late call finishes in the background and
  keeps its slot until then, so a burst of slow jobs turns into `Overloaded`, never into an
  ever-growing set of busy threads.

Threads, not processes, on purpose: the jobs this pool exists for (nh3, i.e. Rust ammonia) release
the GIL while they parse, measured: a 60,000-deep `<div>` mail took 9 s in nh3 on a worker thread
while the main thread's 5 ms sleeps never woke more than 13 ms late. A job that holds the GIL
would need a process pool instead; callers must only submit GIL-releasing (or short) work.

Invariants: `run` never blocks the loop; the in-flight count (running + waiting) never exceeds
`workers + queue`; the pool's threads are created lazily, so an instance made before `fork()` is
safe to use in the child.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class OffloadError(Exception):
    """The job did not produce a result in time or was not accepted; the caller falls back."""


class Overloaded(OffloadError):
    """Every worker is busy and the waiting queue is full."""


class TimedOut(OffloadError):
    """The job ran longer than the pool's time budget (it finishes in the background)."""


class Offload:
    """A bounded thread pool: `await pool.run(fn, *args)` runs `fn(*args)` off the event loop."""

    def __init__(self, *, workers: int = 2, queue: int = 8, budget: float = 2.0, name: str = "offload"):
        if workers < 1 or queue < 0 or budget <= 0:
            raise ValueError("workers >= 1, queue >= 0, budget > 0")
        self.workers = workers
        self.queue = queue
        self.budget = budget
        self.name = name
        self._lock = threading.Lock()
        self._in_flight = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def in_flight(self) -> int:
        """Jobs accepted and not finished yet (running or waiting), late ones included."""
        return self._in_flight

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix=self.name
            )
        return self._executor

    def _release(self, _fut: object) -> None:
        with self._lock:
            self._in_flight -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on a worker thread; raises `Overloaded` or `TimedOut` instead of waiting long."""
        with self._lock:
            if self._in_flight >= self.workers + self.queue:
                raise Overloaded(f"{self.name}: {self._in_flight} jobs in flight")
            self._in_flight += 1
        try:
            fut = self._pool().submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        # The slot is freed when the job really ends, not when the caller stops waiting.
        fut.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.budget)
        except TimeoutError:
            fut.cancel()  # drops it if it is still waiting; a running job cannot be stopped
            raise TimedOut(f"{self.name}: job exceeded {self.budget:.1f} s") from None

    def close(self) -> None:
        """Stop accepting work; running jobs finish on their own (no waiting here)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
