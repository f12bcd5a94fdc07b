"""Which nodes serve, since when (issue 16 §7 `mailhouse status`): a heartbeat mark per node.

Every serving node (its main process) keeps the shared store mark `node:<node id>` (the queue
owner's node id, queue/owner.py) holding its host name, version, process id, start time and
listeners, refreshed every `BEAT` seconds with an expiry of `TTL`, and removed on a clean stop.
A node that died stops refreshing and drops out after `TTL`. On SQLite that is one node; on
PostgreSQL every node of the cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailhouse.store.api import Limits, StoreError

log = logging.getLogger(__name__)

PREFIX = "node:"
BEAT = 60.0
TTL = 3 * BEAT


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node: str
    hostname: str
    version: str
    pid: int
    started: float
    listeners: tuple[str, ...]
    seen: float  # last heartbeat

    def encode(self) -> str:
        return json.dumps(
            {
                "hostname": self.hostname,
                "version": self.version,
                "pid": self.pid,
                "started": self.started,
                "listeners": list(self.listeners),
                "seen": self.seen,
            }
        )


def decode(key: str, value: str) -> NodeInfo | None:
    try:
        d = json.loads(value)
        return NodeInfo(
            key.removeprefix(PREFIX),
            str(d["hostname"]),
            str(d["version"]),
            int(d["pid"]),
            float(d["started"]),
            tuple(d["listeners"]),
            float(d["seen"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def live_nodes(marks: Limits, now: float | None = None) -> list[NodeInfo]:
    """The nodes whose heartbeat has not expired, oldest start first."""
    now = time.time() if now is None else now
    found = [decode(m.key, m.value) for m in await marks.list_marks(PREFIX, now)]
    return sorted((n for n in found if n is not None), key=lambda n: n.started)


class Beacon:
    def __init__(self, marks: Limits, info: NodeInfo, clock: Callable[[], float] = time.time) -> None:
        self.marks = marks
        self.info = info
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        now = self.clock()
        info = dataclasses.replace(self.info, seen=now)
        try:
            await self.marks.set_mark(PREFIX + self.info.node, info.encode(), now + TTL)
        except StoreError as e:  # the store is down: the next beat tries again
            log.warning("node heartbeat not written: %s", e)

    async def _loop(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(BEAT)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="node-beacon")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            await self.marks.remove_mark(PREFIX + self.info.node)
        except StoreError:
            pass
