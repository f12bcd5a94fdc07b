"""Memory of the pregreet test (issue 12 item 8): which clients passed, which talked first.

The port-25 listener tests an unknown client once, the way Postfix's postscreen does: it sends
the first line of a multi-line greeting (``220-host ESMTP``), waits ``[server]
smtp_pregreet_wait`` seconds and only then the final ``220 host …`` line. RFC 5321 §4.2.1
(multi-line replies) and §3.1 (the client waits for the whole greeting) mean a conforming client
says nothing before the final line; a client that speaks first is a pregreeter (spam bots
racing the greeting; postscreen ``postscreen_greet_banner`` / ``postscreen_greet_action``).

This module only remembers the verdicts, so that the test costs a legitimate sender one wait
per ``[server] smtp_pregreet_ttl`` (postscreen_greet_ttl, default 1 day) instead of one per
connection:

- the verdict is a store mark ``"pregreet:<ip>"`` (value ``pass`` or ``fail``, with its expiry),
  shared by every worker process and every node on the store;
- an in-process cache sits in front of it: a client known to this process costs no store round
  trip; an unknown one costs one quick read (and then the wait of the test anyway);
- a failure is remembered for ``[server] smtp_pregreet_fail_ttl`` (default 10 min): the client
  is refused at once meanwhile and cannot retry the test cheaply.

Invariants: the cache never outlives the mark it copies (same expiry) and holds at most
`MAX_CACHED` addresses (cleared when full: a lost entry only costs one store read). A store error
is logged and treated as "unknown" (the client is tested again): the test never refuses mail
because the store is down. Trusted networks are exempt (decided by the session, not here).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from mailhouse.config import Config
from mailhouse.store.api import Limits

log = logging.getLogger(__name__)

__all__ = ["MAX_CACHED", "PregreetMemory", "Verdict", "mark_key"]

#: Addresses remembered per process (a dict entry each, ~200 bytes): bounded memory under a
#: flood of one-off clients; clearing costs each known client one store read.
MAX_CACHED = 65536


class Verdict(enum.Enum):
    PASS = "pass"  # waited for the final greeting line: greeted at once until the mark expires
    FAIL = "fail"  # talked before it: refused at once until the mark expires
    UNKNOWN = "unknown"  # no unexpired mark: test it


def mark_key(ip: str) -> str:
    return f"pregreet:{ip}"


class PregreetMemory:
    """Pregreet verdicts per client IP: in-process cache over the store's marks (one per node).

    CFG gives the TTLs (read at each verdict, so a reload applies); CLOCK is wall-clock epoch
    seconds (the store's marks are), injectable for tests.
    """

    def __init__(self, store: Limits, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._cfg = cfg
        self._clock = clock
        self._cache: dict[str, tuple[Verdict, float]] = {}

    async def verdict(self, ip: str) -> Verdict:
        """What is known of IP: from this process's cache, else from the store (one quick read)."""
        now = self._clock()
        hit = self._cache.get(ip)
        if hit is not None:
            if hit[1] > now:
                return hit[0]
            del self._cache[ip]
        try:
            mark = await self._store.get_mark(mark_key(ip), now)
        except Exception:
            log.exception("pregreet: reading the mark of %s failed; testing the client", ip)
            return Verdict.UNKNOWN
        if mark is None:
            return Verdict.UNKNOWN
        try:
            v = Verdict(mark.value)
        except ValueError:
            return Verdict.UNKNOWN
        self._remember_locally(ip, v, mark.expires)
        return v

    async def record(self, ip: str, v: Verdict) -> None:
        """Remember IP's test result on every node for its TTL (a TTL of 0 remembers nothing)."""
        ttl = self._cfg.pregreet_ttl if v is Verdict.PASS else self._cfg.pregreet_fail_ttl
        if v is Verdict.UNKNOWN or ttl <= 0:
            return
        expires = self._clock() + ttl
        self._remember_locally(ip, v, expires)
        try:
            await self._store.set_mark(mark_key(ip), v.value, expires)
        except Exception:
            log.exception("pregreet: storing the %s mark of %s failed", v.value, ip)

    def forget(self, ip: str) -> None:
        """Drop IP from this process's cache (the store's mark stays)."""
        self._cache.pop(ip, None)

    def _remember_locally(self, ip: str, v: Verdict, expires: float) -> None:
        if len(self._cache) >= MAX_CACHED and ip not in self._cache:
            self._cache.clear()  # bounded memory; see MAX_CACHED
        self._cache[ip] = (v, expires)
