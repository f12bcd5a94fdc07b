"""The worker process of :mod:`mailhouse.runtime.cpupool`: ``python .../runtime/cpuworker.py``.

Run as a script, not as ``-m``, so starting a worker imports no ``mailhouse`` package (the
runtime's ``__init__`` alone pulls in ~150 modules); unpickling a job imports its module.

Reads frames ``8-octet length + pickle((fn, args))`` on stdin, runs ``fn(*args)`` and answers
``pickle((True, result))`` or ``pickle((False, exception))`` on the original stdout, one job at a
time, until stdin ends. Before the first job, fd 1 is pointed at stderr so a job that prints
cannot corrupt the framing. The niceness given as the first argument is added to the process's
(and its scheduling made SCHED_BATCH), so CPU jobs never outcompete the event loop. SIGINT is ignored (a ^C to the server's process group is the
parent's to handle; the parent kills or closes us).

Invariants: one answer per request, in order; an exception that cannot be pickled is answered
as its type name and text (the parent raises ``RemoteError``); nothing else is written to the
answer pipe.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
from typing import BinaryIO

HEADER = struct.Struct(">Q")


def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _answer(ok: bool, value: object) -> bytes:
    try:
        return pickle.dumps((ok, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if ok:
            value = TypeError(f"result of type {type(value).__name__} cannot be pickled")
        return pickle.dumps((False, f"{type(value).__name__}: {value}"), protocol=pickle.HIGHEST_PROTOCOL)


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer jobs from INP on OUT until INP ends."""
    while True:
        head = _read_exact(inp, HEADER.size)
        if head is None:
            return
        (n,) = HEADER.unpack(head)
        body = _read_exact(inp, n)
        if body is None:
            return
        try:
            fn, args = pickle.loads(body)  # noqa: S301 - from our parent over a private pipe
            del body
            data = _answer(True, fn(*args))
        except Exception as e:  # the job's own error, sent back typed
            data = _answer(False, e)
        out.write(HEADER.pack(len(data)))
        out.write(data)
        out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(sys.argv) > 1:
        # below the serving process: when both want a CPU, the event loop (interactive work)
        # gets it first and the jobs use what is left (CFS weight ~1/9 at nice 10)
        with contextlib.suppress(OSError):
            os.nice(int(sys.argv[1]))
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() in a job goes to stderr, never into the answers
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
