"""Loop-lag watchdog: notice when something blocks the node's event loop, and say what it was.

A node serves every session from ONE event loop, so a callback that runs for 2 s delays every
connection by 2 s (issue 12). The watchdog has two cheap halves:
- a heartbeat task on the loop sleeps `interval` seconds and measures how late it woke up
  (`lag = woke - (slept_at + interval)`); above `threshold` it logs one WARNING;
- a daemon sampler thread wakes every `interval` and, when the heartbeat is older than
  `threshold` (the loop is stuck right now), takes a snapshot of the loop thread's Python stack
  (`sys._current_frames()`) and of the task the loop is running (`asyncio.current_task(loop)`),
  once per stall. The warning names that task and the innermost frames, i.e. the code that was
  running while the loop was late — not a guess afterwards.
Why not asyncio debug mode (`slow_callback_duration`): it wraps every callback with timing and
source tracebacks and is far too heavy for production; it is also not available on uvloop.
The cost here is one timer per `interval` on the loop and one thread waking as often, reading a
float; the stack is captured only while the loop is stuck.

Invariants: the watchdog never blocks or raises into the loop; `stop()` ends both halves; a
stall is reported once (by the heartbeat when the loop wakes up), with the snapshot if the
sampler caught it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass

log = logging.getLogger(__name__)

LAG_THRESHOLD = 0.1  # seconds late the loop may wake before it is reported
LAG_INTERVAL = 0.05  # seconds between heartbeats (and sampler checks)
STACK_FRAMES = 6  # innermost frames of the loop thread named in the warning


@dataclass(frozen=True, slots=True)
class Stall:
    """What the loop thread was doing while it was late (taken by the sampler thread)."""

    task: str  # name of the running asyncio task, or "-" for a plain callback
    where: str  # innermost frames, "file:line function" joined by " <- "


class Watchdog:
    """Start with `start()` on the running loop; `stop()` before the loop closes."""

    def __init__(self, *, threshold: float = LAG_THRESHOLD, interval: float = LAG_INTERVAL) -> None:
        self.threshold = threshold
        self.interval = interval
        self.stalls = 0  # stalls reported so far (tests and metrics)
        self.max_lag = 0.0
        self._beat = time.monotonic()
        self._sample: tuple[float, Stall] | None = None  # (heartbeat it belongs to, snapshot)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._stop.clear()
        self._task = self._loop.create_task(self._heartbeat(), name="mailhouse-watchdog")
        self._thread = threading.Thread(target=self._sampler, name="mailhouse-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
            self._thread = None

    async def _heartbeat(self) -> None:
        while True:
            slept_at = time.monotonic()
            self._beat = slept_at
            await asyncio.sleep(self.interval)
            woke = time.monotonic()
            self._beat = woke
            lag = woke - slept_at - self.interval
            if lag > self.threshold:
                self._report(lag, slept_at)

    def _report(self, lag: float, beat: float) -> None:
        self.stalls += 1
        self.max_lag = max(self.max_lag, lag)
        sample, self._sample = self._sample, None
        s = sample[1] if sample is not None and sample[0] == beat else None  # never a stale one
        if s is None:
            log.warning("event loop blocked for %.0f ms (not sampled: shorter than a check)", lag * 1000)
        else:
            log.warning("event loop blocked for %.0f ms in task %s at %s", lag * 1000, s.task, s.where)

    def _sampler(self) -> None:
        sampled_beat = -1.0
        while not self._stop.wait(self.interval):
            beat = self._beat
            if beat != sampled_beat and time.monotonic() - beat > self.threshold:
                sampled_beat = beat  # one snapshot per stall: the loop has not beaten since
                self._sample = (beat, self._snapshot())

    def _snapshot(self) -> Stall:
        frame = sys._current_frames().get(self._loop_thread)
        where = "-"
        if frame is not None:
            frames = traceback.extract_stack(frame, limit=STACK_FRAMES)
            where = " <- ".join(f"{f.filename}:{f.lineno} {f.name}" for f in reversed(frames))
        task = None
        if self._loop is not None:
            try:
                task = asyncio.current_task(self._loop)
            except RuntimeError:
                task = None
        return Stall(task.get_name() if task is not None else "-", where)
