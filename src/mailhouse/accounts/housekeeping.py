"""Periodic purge of the shared limits (issue 12 item 7): expired marks and old events.

`store.count_event` drops a key's old events whenever that key is counted again, but keys that
are never counted again (an attacker's one-off user names, an IP that went away) and expired
marks (bans, remembered clients) stay until `store.purge_limits` removes them. Each node runs
one `Housekeeper` (started by `app.run_node`): every `INTERVAL` seconds, and once at start.

Invariant: an event is purged only when older than `MAX_EVENT_AGE`, longer than any window a
limit counts over (the longest is a day: recipients per day), so no live count ever shrinks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mailhouse.store.api import Limits

log = logging.getLogger(__name__)

INTERVAL = 3600.0  # seconds between purges (hourly)
MAX_EVENT_AGE = 2 * 86400.0  # seconds; > every counting window (a day at most)


class Housekeeper:
    def __init__(
        self,
        store: Limits,
        *,
        interval: float = INTERVAL,
        max_event_age: float = MAX_EVENT_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_event_age = max_event_age
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def purge(self) -> int:
        """One pass; the number of rows removed."""
        now = self._clock()
        n = await self.store.purge_limits(now, now - self.max_event_age)
        if n:
            log.info("limits housekeeping: %d expired marks and old events purged", n)
        return n

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="limits-housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception:  # a store outage must not end the loop: try again next time
                log.exception("limits housekeeping failed")
            await asyncio.sleep(self.interval)
