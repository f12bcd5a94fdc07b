"""When the reports we send go out: `mailhouse report send` now, and once a day in `serve`.

:func:`send_due` sends one day's reports of the kinds asked (default: yesterday, UTC — RFC 7489
§7.2 and RFC 8460 §4.4 report whole UTC days). :class:`DailyReports` runs it in every serving
node shortly after each UTC midnight; the store's claim (`Store.claim_report`) makes sure one
node sends each report, so every node may try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence

from mailhouse.config import Config
from mailhouse.reports import dmarc_out, tlsrpt_out
from mailhouse.reports.outbound import (
    Enqueue,
    Outcome,
    ReportSender,
    ReportStore,
    TxtLookup,
    txt_lookup,
    yesterday,
)
from mailhouse.store.api import ReportKind

log = logging.getLogger(__name__)

#: How often a serving node looks whether yesterday's reports are out (they are claimed once).
CHECK_INTERVAL = 3600.0
#: Spread of the first check after start, so the nodes of a cluster do not all look at once.
START_JITTER = 300.0


async def send_due(
    cfg: Config,
    store: ReportStore,
    enqueue: Enqueue,
    owner: str,
    kinds: Sequence[ReportKind] = (ReportKind.DMARC, ReportKind.TLSRPT),
    day: str | None = None,
    lookup: TxtLookup | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Outcome]:
    """Send DAY's (default yesterday's) reports of KINDS; what happened to each."""
    day = day or yesterday(clock())
    lookup = lookup or txt_lookup(cfg)
    sender = ReportSender(cfg, store, enqueue, lookup, owner, clock)
    builds = {ReportKind.DMARC: dmarc_out.make_build, ReportKind.TLSRPT: tlsrpt_out.make_build}
    out: list[Outcome] = []
    for kind in kinds:
        if kind is ReportKind.DMARC and not cfg.dmarc_reports:  # [dmarc] reports = false
            continue
        out += await sender.send(kind, day, builds[kind](cfg, lookup))
    return out


class DailyReports:
    """The serving node's daily send (``[reports] send``)."""

    def __init__(self, cfg: Config, store: ReportStore, enqueue: Enqueue, owner: str) -> None:
        self.cfg, self.store, self.enqueue, self.owner = cfg, store, enqueue, owner
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.cfg.reports_send and self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(random.uniform(0, START_JITTER))
        while True:
            try:
                await send_due(self.cfg, self.store, self.enqueue, self.owner)
            except Exception:
                log.exception("daily reports failed; next try in %.0f s", CHECK_INTERVAL)
            await asyncio.sleep(CHECK_INTERVAL)
