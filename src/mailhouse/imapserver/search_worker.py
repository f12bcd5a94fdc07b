"""SEARCH matching of big messages in the CPU process pool (issue 12 item 1).

:mod:`mailhouse.imapserver.query` matches loaded messages on a thread pool; decoding and
case-folding a big text part is pure Python that holds the GIL, so under a hostile mix (five
sessions repeating ``SEARCH TEXT`` over 40 MB messages) the event loop waited for the GIL and a
second client's NOOP took hundreds of milliseconds. Here the messages of a SEARCH that are big
(:data:`PROCESS_MIN` octets or more), not in the node's parsed-message cache and stored as files
are matched in :func:`mailhouse.runtime.cpupool.shared` instead: the job gets the blob's PATH and
reads it in the worker (no message octets cross a pipe, none are held by the serving process),
and a job past the command's deadline has its worker killed. Messages of other stores (blobs
that cannot be opened by path: PostgreSQL, inline SQLite rows) and cached ones stay on the
thread path, as do SORT and THREAD (their per-message extractors are closures).

Invariants: the worker evaluates exactly what the thread path evaluates (``query._match_files``
calls ``query._match_batch`` over a context rebuilt from picklable parts); the deadline is the command's
(``time.monotonic()`` is system-wide on Linux, the same clock in every process); a message whose
file is gone (expunged meanwhile) matches nothing, as on the thread path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from mailhouse.imapserver.errors import Transient
from mailhouse.message.cache import CachedMessage
from mailhouse.message.search import SearchTimeout
from mailhouse.proto.imap.search import SearchKey
from mailhouse.runtime import cpupool
from mailhouse.runtime.cpupool import RemoteError, WorkerDied
from mailhouse.runtime.offload import Overloaded, TimedOut

#: Messages this big (recorded size) or bigger are matched in a worker process; smaller ones are
#: cheaper on a thread than a pipe round trip.
PROCESS_MIN: Final = 1024 * 1024
#: Octets of messages (recorded sizes) one process job reads; a bigger message is a job alone.
JOB_BYTES: Final = 8 * 1024 * 1024
#: Seconds a job may outlive the command's deadline before its worker is killed (the job checks
#: the deadline itself between windows; this is the backstop).
GRACE: Final = 1.0

# (view, what the cheap keys said) and, for the pool, the blob path; views are query.MessageView
Item = tuple[Any, "bool | None"]
Remote = tuple[Any, "bool | None", str]


def _path_of(load: object) -> Any:
    """The store's ``blobs.local_path`` (None when blobs cannot be opened by path)."""
    store = getattr(load, "store", None)
    blobs = getattr(store, "blobs", None)
    return getattr(blobs, "local_path", None)


def split(batch: list[Item], load: object) -> tuple[list[Remote], list[Item]]:
    """(messages for the process pool with their blob paths, the rest for the thread path);
    LOAD is the SEARCH's loader (``selected.MessageLoader``: its store and cache)."""
    local_path = _path_of(load)
    if local_path is None:
        return [], batch
    peek = getattr(load, "peek", None)
    remote: list[Remote] = []
    rest: list[Item] = []
    for v, known in batch:
        rec = v.record
        path = None
        if rec.size >= PROCESS_MIN and (peek is None or peek(rec) is None):
            path = local_path(rec.blob_key)
        if path is None:
            rest.append((v, known))
        else:
            remote.append((v, known, str(path)))
    return remote, rest


def read_message(path: str) -> CachedMessage | None:
    """In the worker: the message in the blob file at PATH, or None when it is gone (expunged
    meanwhile: it matches nothing)."""
    try:
        return CachedMessage(Path(path).read_bytes())
    except FileNotFoundError:
        return None


async def run_jobs(
    job: Callable[..., list[int]],
    criteria: SearchKey,
    remote: list[Remote],
    parts: tuple[object, ...],
    needles: set[str],
    deadline: float,
) -> list[Any]:
    """The views of ``remote`` that ``job(criteria, items, parts, needles)`` (a module-level
    function: it runs in the CPU pool) reports as matching, job by job. Past ``deadline``:
    :class:`SearchTimeout`; a dead worker: :class:`Transient` (``NO [UNAVAILABLE]``)."""
    out: list[Any] = []
    for items in _jobs(remote):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SearchTimeout
            try:
                hits = await cpupool.shared().run(job, criteria, items, parts, needles, budget=left + GRACE)
                break
            except Overloaded:
                await asyncio.sleep(min(0.05, left))
            except TimedOut:
                raise SearchTimeout from None
            except (WorkerDied, RemoteError):
                raise Transient("Search failed, try again later") from None  # the worker died (OOM?)
        out += [items[i][0] for i in hits]
    return out


def _jobs(remote: Sequence[Remote]) -> list[list[Remote]]:
    jobs: list[list[Remote]] = []
    size = JOB_BYTES
    for item in remote:
        n = max(item[0].record.size, 0)
        if size + n > JOB_BYTES:
            jobs.append([])
            size = 0
        jobs[-1].append(item)
        size += n
    return jobs
