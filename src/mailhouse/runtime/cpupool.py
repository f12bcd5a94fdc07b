"""A bounded pool of worker PROCESSES for CPU-heavy pure-Python jobs (issue 12 item 1).

Why processes: a pure-Python job (SEARCH text decoding and matching, the MIME structure parse of
a big message, HTML-to-text) holds the GIL in short steps for as long as it runs. On a worker
thread it still competes with the event loop for the one interpreter: under the abuse mix the loop
thread waited for the GIL most of the time and a legitimate NOOP took 0.27 s (Dovecot: 0.02 s).
A job in another process competes with the loop only for a CPU core, which the kernel shares
fairly. And unlike a thread, a process can be stopped: a job that runs past its time budget is
KILLED (SIGKILL) and its worker replaced, so a hostile message cannot keep burning CPU after the
command that asked for it has given up.

Shape: ``await pool.run(fn, *args)`` runs ``fn(*args)`` in one of ``workers`` processes
(``runtime/cpuworker.py`` run as a script, spawned lazily by the event loop that first uses the
pool: a pool made before ``fork()`` or by another loop starts its own workers). ``fn`` must be a
module-level function (pickled by reference); arguments and result are pickled over the worker's
stdin/stdout through asyncio pipes, so a big payload never blocks the loop — but jobs should still
pass a file path (blob file, spool file) or a bounded window, not a whole message.

Invariants:
- at most ``workers`` jobs run and ``queue`` more wait; one beyond that fails at once with
  :class:`~mailhouse.runtime.offload.Overloaded`;
- a job that runs ``budget`` seconds (per call: ``run(..., budget=)``) has its process killed and
  fails with :class:`~mailhouse.runtime.offload.TimedOut`; a caller cancelled while its job runs
  kills the process too (its answer would arrive to nobody). The next job starts a fresh worker;
- an exception raised by ``fn`` is re-raised in the caller with its own type (typed errors cross
  the process boundary); one that cannot be pickled arrives as :class:`RemoteError`; a worker that
  dies (crash, OOM killer) fails the job with :class:`WorkerDied`;
- :meth:`CpuPool.close` kills every worker and fails waiting jobs; nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from mailhouse.runtime.offload import OffloadError, Overloaded, TimedOut

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Frame header: the pickled payload's length (8 octets, big endian).
HEADER: Final = struct.Struct(">Q")
#: Default worker processes: min(2, CPUs) ([limits] cpu_workers).
DEFAULT_WORKERS: Final = max(1, min(2, os.cpu_count() or 1))
#: Jobs that may wait for a worker ([limits] cpu_queue).
DEFAULT_QUEUE: Final = 32
#: Seconds one job may run before its worker is killed ([limits] cpu_budget).
DEFAULT_BUDGET: Final = 30.0
#: Niceness added to worker processes (and SCHED_BATCH): on a busy machine the event loop's
#: short interactive steps get the CPU before the jobs' long ones (measured under bench/abuse:
#: at equal priority two busy search workers took CPU time the loop needed).
WORKER_NICE: Final = 10
#: Seconds a new worker may take to start (import the interpreter) before it counts as dead.
START_TIMEOUT: Final = 30.0


#: The worker's script (stdlib only; ``mailhouse.runtime`` itself is not imported there).
_WORKER: Final = str(Path(__file__).with_name("cpuworker.py"))


class WorkerDied(OffloadError):
    """The worker process ended without an answer (crashed, killed from outside, out of memory)."""


class RemoteError(RuntimeError):
    """``fn`` raised an exception that could not be pickled back; its type and text."""


class _Worker:
    """One worker process and its pipes (None until started, and again after it was killed)."""

    __slots__ = ("proc",)

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def ensure(self) -> asyncio.subprocess.Process:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            proc = self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                _WORKER,  # run as a script: the worker imports only what its jobs need
                str(WORKER_NICE),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            )
        return proc

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if proc is not None:
            # reap it in the background (CpuPool.aclose waits for these)
            task = asyncio.get_running_loop().create_task(_reap(proc))
            _REAPING.add(task)
            task.add_done_callback(_REAPING.discard)


_REAPING: set[asyncio.Task[None]] = set()


async def _reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(Exception):
        if proc.stdin is not None:
            proc.stdin.close()
        await proc.wait()
        await asyncio.sleep(0)  # the pipes' connection_lost: the transport closes on this loop


class CpuPool:
    """``await pool.run(fn, *args)``: ``fn(*args)`` in a worker process; see the module docstring."""

    def __init__(
        self,
        *,
        workers: int = DEFAULT_WORKERS,
        queue: int = DEFAULT_QUEUE,
        budget: float = DEFAULT_BUDGET,
        name: str = "cpu",
    ) -> None:
        if workers < 1 or queue < 0 or budget <= 0:
            raise ValueError("workers >= 1, queue >= 0, budget > 0")
        self.workers = workers
        self.queue = queue
        self.budget = budget
        self.name = name
        self.killed = 0  # workers killed for running past their budget (tests, metrics)
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: list[_Worker] = []
        self._closed = False
        _POOLS.add(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Jobs accepted and not finished (running or waiting)."""
        return self._in_flight

    def _slots(self) -> asyncio.Queue[_Worker]:
        loop = asyncio.get_running_loop()
        if self._idle is None or self._loop is not loop or self._pid != os.getpid():
            # first use, another event loop, or a fork: this process/loop gets workers of its own
            if self._pid == os.getpid():  # (after a fork the parent still owns the old ones)
                for w in self._all:
                    if w.proc is not None and w.proc.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(w.proc.pid, signal.SIGKILL)  # its loop may be closed already
            self._loop, self._pid = loop, os.getpid()
            self._all = [_Worker() for _ in range(self.workers)]
            self._idle = asyncio.Queue()
            for w in self._all:
                self._idle.put_nowait(w)
            self._in_flight = 0
        return self._idle

    async def run(self, fn: Callable[..., T], *args: object, budget: float | None = None) -> T:
        """``fn(*args)`` in a worker process within ``budget`` seconds of running (default: the pool's)."""
        if self._closed:
            raise Overloaded(f"{self.name}: pool closed")
        idle = self._slots()
        if self._in_flight >= self.workers + self.queue:
            raise Overloaded(f"{self.name}: {self._in_flight} jobs in flight")
        payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        self._in_flight += 1
        try:
            worker = await idle.get()
            try:
                result: T = await self._call(worker, payload, self.budget if budget is None else budget)
                return result
            finally:
                idle.put_nowait(worker)
        finally:
            self._in_flight -= 1

    async def _call(self, worker: _Worker, payload: bytes, budget: float) -> Any:
        try:
            async with asyncio.timeout(START_TIMEOUT):  # not wait_for: on 3.11 it can swallow a cancel
                proc = await worker.ensure()
        except (OSError, TimeoutError) as e:
            worker.kill()
            raise WorkerDied(f"{self.name}: cannot start a worker: {e}") from None
        assert proc.stdin is not None and proc.stdout is not None
        done = False
        try:
            async with asyncio.timeout(budget):
                proc.stdin.write(HEADER.pack(len(payload)))
                proc.stdin.write(payload)
                await proc.stdin.drain()
                head = await proc.stdout.readexactly(HEADER.size)
                (n,) = HEADER.unpack(head)
                answer = await proc.stdout.readexactly(n)
            done = True
        except TimeoutError:
            self.killed += 1
            log.warning(
                "%s: job ran past its %.1f s budget; worker pid %s killed", self.name, budget, proc.pid
            )
            raise TimedOut(f"{self.name}: job exceeded {budget:.1f} s") from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as e:
            raise WorkerDied(f"{self.name}: worker pid {proc.pid} ended: {e!r}") from None
        finally:
            if not done:
                worker.kill()  # timed out, died, or the caller was cancelled mid-job
        # our own child's answer over a private pipe (never client data)
        ok, value = pickle.loads(answer)  # noqa: S301
        if ok:
            return value
        if isinstance(value, BaseException):
            raise value
        raise RemoteError(str(value))

    def close(self) -> None:
        """Kill every worker; later calls fail with Overloaded."""
        self._closed = True
        for w in self._all:
            proc, w.proc = w.proc, None
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    async def aclose(self) -> None:
        """:meth:`close` and wait until the workers are gone (on the pool's own loop)."""
        procs = [w.proc for w in self._all if w.proc is not None]
        self.close()
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            await asyncio.gather(*(_reap(p) for p in procs))
            await asyncio.gather(*(t for t in list(_REAPING) if t.get_loop() is loop), return_exceptions=True)


_shared: CpuPool | None = None
_POOLS: weakref.WeakSet[CpuPool] = weakref.WeakSet()  # every pool of this process (shutdown)
_settings: dict[str, Any] = {}


def configure(*, workers: int | None = None, queue: int | None = None, budget: float | None = None) -> None:
    """Set the shared pool's size and budget ([limits] cpu_workers, cpu_queue, cpu_budget); takes
    effect for the pool made next (``app`` calls this before serving)."""
    global _shared
    _settings.update(
        {k: v for k, v in (("workers", workers), ("queue", queue), ("budget", budget)) if v is not None}
    )
    if _shared is not None:
        _shared.close()
        _shared = None


def shared() -> CpuPool:
    """The process's shared CPU pool, made on first use (workers start with the first job)."""
    global _shared
    if _shared is None or _shared.closed:
        _shared = CpuPool(name="cpu", **_settings)
    return _shared


async def shutdown() -> None:
    """Stop the workers of every pool of this process (``app`` on stop); a pool used afterwards
    refuses work (the shared one is made anew)."""
    global _shared
    _shared = None
    for pool in list(_POOLS):
        await pool.aclose()
