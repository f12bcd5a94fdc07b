"""One DNS time budget per inbound message (issue 12 item 9): SPF, DKIM, DMARC and ARC, bounded.

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

:func:`check_all` adds, within the same deadline and in two more threads, the DMARC policy
records of the From domains (RFC 7489 §6.6.3; the discovery needs only the From field, so it
runs alongside SPF and DKIM and the evaluation, which needs their results, follows them — it is
pure) and the ARC chain (RFC 8617 §5.2, only when the message carries ARC-Seal fields). A
discovery or ARC check out of time is ``temperror`` too.

Invariants: :func:`check` and :func:`check_all` return within ``budget + GRACE`` seconds; a checker that raised (a bug)
gives ``None`` for its half (nothing recorded for it), logged with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mailhouse.mailauth import arc, dkim, dmarc, spf
from mailhouse.mailauth.arc import ArcResult
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.dmarc import Discovery
from mailhouse.mailauth.spf import SpfResult
from mailhouse.store.spool import SpooledMessage

T = TypeVar("T")

log = logging.getLogger(__name__)

__all__ = ["GRACE", "Checks", "check", "check_all"]

#: Seconds past the budget a check may take to hand back its own temperror (thread start-up,
#: the last look-up's socket timeout) before its result is taken as temperror without it.
GRACE = 0.5
BUDGET_EXHAUSTED = "DNS budget exhausted"
#: From domains whose DMARC policy is looked up for one message (RFC 7489 §6.6.1 asks for every
#: author domain; a From field with dozens of domains gets the first few, the strictest wins).
MAX_AUTHOR_DOMAINS = 4


@dataclass(frozen=True, slots=True)
class Checks:
    """Everything the DNS work of one message found; None for a checker that raised (a bug)."""

    spf: SpfResult | None
    dkim: list[DkimResult] | None
    dmarc: list[Discovery] | None  # one per author domain
    from_problem: str  # why there is no author domain ("" when there is one)
    arc: ArcResult | None


def _discover_all(domains: list[str], lookup: dmarc.TxtLookup, deadline: float) -> list[Discovery]:
    return [dmarc.discover(d, lookup, deadline) for d in domains]


def _arc_verify(message: bytes | SpooledMessage, dnsfunc: Any, deadline: float) -> ArcResult:
    data = message if isinstance(message, bytes) else message.to_bytes()  # dkimpy hashes it whole
    return arc.verify(data, dnsfunc, deadline)


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
    c = await check_all(message, ip, mail_from, helo, nameservers, budget, dmarc_and_arc=False)
    return c.spf, c.dkim


async def check_all(
    message: bytes | SpooledMessage,
    ip: str,
    mail_from: str,
    helo: str,
    nameservers: Sequence[tuple[str, int]] | None,
    budget: float,
    *,
    dmarc_and_arc: bool = True,
) -> Checks:
    """SPF, DKIM, the From domains' DMARC records and the ARC chain of MESSAGE within BUDGET s."""
    deadline = time.monotonic() + budget
    spf_fut = asyncio.ensure_future(
        asyncio.to_thread(spf.check, ip, mail_from, helo, nameservers, timeout=budget)
    )
    dkim_fut = asyncio.ensure_future(asyncio.to_thread(dkim.verify, message, nameservers, deadline=deadline))
    futs: list[asyncio.Future[Any]] = [spf_fut, dkim_fut]
    head = message if isinstance(message, bytes) else message.head
    domains, problem = dmarc.author_domains(head) if dmarc_and_arc else ([], "")
    domains = domains[:MAX_AUTHOR_DOMAINS]
    resolver = dkim.make_resolver(nameservers, budget)
    dmarc_fut: asyncio.Future[list[Discovery]] | None = None
    if domains:
        lookup = dmarc.resolver_lookup(resolver)
        dmarc_fut = asyncio.ensure_future(asyncio.to_thread(_discover_all, domains, lookup, deadline))
        futs.append(dmarc_fut)
    arc_fut: asyncio.Future[ArcResult] | None = None
    if dmarc_and_arc and arc.has_chain(head):
        dnsfunc = dkim.txt_lookup(resolver)
        arc_fut = asyncio.ensure_future(asyncio.to_thread(_arc_verify, message, dnsfunc, deadline))
        futs.append(arc_fut)
    await asyncio.wait(futs, timeout=budget + GRACE)

    # RFC 7208 §2.6.6 / RFC 8601 §2.7.1 / RFC 7489 §6.6.3: a check the DNS budget cut short is a
    # temperror; a checker bug must never lose mail: it records nothing for that check
    spf_result = _outcome(
        spf_fut, "SPF", ip, budget, lambda: spf.unfinished(mail_from, helo, BUDGET_EXHAUSTED)
    )
    dkim_results = _outcome(dkim_fut, "DKIM", ip, budget, lambda: dkim.unfinished(message, BUDGET_EXHAUSTED))
    discoveries: list[Discovery] | None = []
    if dmarc_fut is not None:
        discoveries = _outcome(
            dmarc_fut,
            "DMARC",
            ip,
            budget,
            lambda: [Discovery(d, None, error="temperror", reason=BUDGET_EXHAUSTED) for d in domains],
        )
    arc_result: ArcResult | None = ArcResult("none") if dmarc_and_arc else None
    if arc_fut is not None:
        arc_result = _outcome(arc_fut, "ARC", ip, budget, lambda: arc.unfinished(BUDGET_EXHAUSTED))
    return Checks(spf_result, dkim_results, discoveries, problem, arc_result)


def _outcome(
    fut: asyncio.Future[T], what: str, ip: str, budget: float, unfinished: Callable[[], T]
) -> T | None:
    """FUT's result; None (logged) when the checker raised; UNFINISHED() when the budget ran out
    (the late thread's result is then consumed and dropped)."""
    if fut.done():
        try:
            return fut.result()
        except Exception:
            log.exception("%s check failed for ip=%s", what, ip)
            return None
    fut.add_done_callback(_consume)
    log.info("%s for ip=%s: DNS budget of %.1f s exhausted, temperror", what, ip, budget)
    return unfinished()
