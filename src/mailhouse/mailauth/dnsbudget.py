"""One DNS time budget per inbound message (issue 12 item 9): SPF and DKIM in parallel, bounded.

Without it a resolver that never answers held each message for pyspf's 20 s query time (RFC 7208
§4.6.4) plus DKIM's key look-ups, and a client with a 20 s timeout gave up. Here every check of
one message shares one deadline, ``[mailauth] dns_budget`` seconds (default 5) from the end of
DATA:

- SPF and DKIM run at once, each in a worker thread (the loop never waits on DNS);
- each look-up gets at most the time left (SPF through pyspf's overall ``querytime``, DKIM through
  :func:`dkim.verify`'s ``deadline``), so the threads end about when the budget does;
- if a check is still running at the deadline (plus `GRACE`), its result is ``temperror``
  (RFC 7208 §2.6.6: "a transient (generally DNS) error while performing the check"; RFC 8601
  §2.7.1 for DKIM) and the message goes on: results are recorded, not enforced, so a DNS outage
  delays mail by at most the budget and never defers it.

Invariants: :func:`check` returns within ``budget + GRACE`` seconds; a checker that raised (a bug)
gives ``None`` for its half (nothing recorded for it), logged with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from mailhouse.mailauth import dkim, spf
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.spf import SpfResult
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

__all__ = ["GRACE", "check"]

#: Seconds past the budget a check may take to hand back its own temperror (thread start-up,
#: the last look-up's socket timeout) before its result is taken as temperror without it.
GRACE = 0.5
BUDGET_EXHAUSTED = "DNS budget exhausted"


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned check's exception so asyncio does not warn about it."""
    if not fut.cancelled():
        fut.exception()


async def check(
    message: bytes | SpooledMessage,
    ip: str,
    mail_from: str,
    helo: str,
    nameservers: Sequence[tuple[str, int]] | None,
    budget: float,
) -> tuple[SpfResult | None, list[DkimResult] | None]:
    """SPF of (IP, MAIL FROM, HELO) and DKIM of MESSAGE, both within BUDGET seconds."""
    deadline = time.monotonic() + budget
    spf_fut = asyncio.ensure_future(
        asyncio.to_thread(spf.check, ip, mail_from, helo, nameservers, timeout=budget)
    )
    dkim_fut = asyncio.ensure_future(asyncio.to_thread(dkim.verify, message, nameservers, deadline=deadline))
    await asyncio.wait((spf_fut, dkim_fut), timeout=budget + GRACE)

    spf_result: SpfResult | None
    if spf_fut.done():
        try:
            spf_result = spf_fut.result()
        except Exception:  # a checker bug must never lose mail: record nothing for it
            log.exception("SPF check failed for ip=%s", ip)
            spf_result = None
    else:
        spf_fut.add_done_callback(_consume)
        # RFC 7208 §2.6.6: temperror — the check could not complete for DNS reasons
        spf_result = spf.unfinished(mail_from, helo, BUDGET_EXHAUSTED)
        log.info("SPF for ip=%s: DNS budget of %.1f s exhausted, temperror", ip, budget)

    dkim_results: list[DkimResult] | None
    if dkim_fut.done():
        try:
            dkim_results = dkim_fut.result()
        except Exception:
            log.exception("DKIM verification failed for ip=%s", ip)
            dkim_results = None
    else:
        dkim_fut.add_done_callback(_consume)
        dkim_results = dkim.unfinished(message, BUDGET_EXHAUSTED)  # RFC 8601 §2.7.1 temperror
        log.info("DKIM for ip=%s: DNS budget of %.1f s exhausted, temperror", ip, budget)
    return spf_result, dkim_results
