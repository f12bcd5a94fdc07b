"""Limits rules (shared counters and expiring marks), written once.

What they serve: login failure counters and bans (per IP, per network, per account), send-rate
and recipients-per-day counters, the pregreet test's memory of passing clients — anything that
must hold across worker processes and cluster nodes, so it lives in the store.

Invariants:
- `count_event` takes KEY's lock, inserts the event, drops KEY's events older than the window and
  sums the rest in ONE transaction: concurrent counts of one key (other workers, other nodes)
  are serialised, so of N concurrent events exactly one caller sees the total N — a limit of N
  cannot be overrun by guessing in parallel.
- A mark is returned only while ``expires > now``; expired marks are invisible before they are
  purged.
- Nothing here is mail: `store copy` and `store verify` ignore these tables (state that rebuilds
  itself in minutes).
"""

from __future__ import annotations

from mailhouse.store.api import Mark
from mailhouse.store.backend import Tx


async def count_event(tx: Tx, key: str, now: float, window: float, weight: int) -> int:
    await tx.lock_limit(key)
    await tx.insert_event(key, now, weight)
    await tx.delete_events(key, now - window)
    return await tx.sum_events(key, now - window)


async def get_mark(tx: Tx, key: str, now: float) -> Mark | None:
    m = await tx.mark(key)
    return m if m is not None and m.expires > now else None


async def list_marks(tx: Tx, prefix: str, now: float) -> list[Mark]:
    return [m for m in await tx.marks(prefix) if m.expires > now]
