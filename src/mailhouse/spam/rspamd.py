"""Rspamd as one rule of the pipeline, over its HTTP protocol (issue 14 §3, ``[spam] rspamd_url``).

The message goes to Rspamd's normal worker as ``POST /checkv2`` with the envelope in the request
headers Rspamd reads (https://rspamd.com/doc/developers/protocol.html): ``IP``, ``Helo``,
``From``, one ``Rcpt`` per recipient, ``Queue-Id``, ``User`` (only when the client authenticated),
``Hostname`` (the client's forward-confirmed reverse DNS name, ``unknown`` without one, as
Postfix's milter macro ``{client_name}`` gives it). The reply is JSON: ``score``, ``action``,
``symbols`` (name → score, description, options) and ``messages``.

How the verdict combines (what an admin used to SpamAssassin plugins expects): Rspamd's score is
*added* to Mailhouse's, and Mailhouse's thresholds decide. Every symbol with a non-zero score
becomes one hit ``RSPAMD_<SYMBOL>`` (its description and options as the reason), and one hit
``RSPAMD`` carries the difference between Rspamd's total and those symbols (Rspamd's group
limits, or a forced action such as GTUBE, whose symbol scores 0 while the action is ``reject``
at Rspamd's required score) with the action and the zero-score symbols in its reason — so the
lines of an explanation always add up to the score.

Bounds: the request gets the time left in the message's budget (`Context.remaining`, less
`MARGIN` so the hit is in before the pipeline's deadline); a refused connection, a timeout, an
HTTP error or a reply that is not Rspamd's JSON give ``RSPAMD_UNAVAILABLE`` with score 0 (a
temporary error: the verdict goes on without Rspamd, the message is never held or lost). A
message over ``[spam] rspamd_max_size`` octets is not sent at all (as spamc's ``--max-size``
and Rspamd's own milter proxy do: big mail is rarely spam and costly to scan) and gets
``RSPAMD_SKIPPED``, score 0, saying so. A spooled message on disk is read in a worker thread;
the HTTP exchange is httpx's, one connection pool per event loop.

Invariants: the rule never raises for Rspamd's behaviour (any failure is ``RSPAMD_UNAVAILABLE``),
never waits past ``ctx.deadline``, and sends at most ``rspamd_max_size`` octets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import httpx

from mailhouse.spam.lookup import Lookup
from mailhouse.spam.rdns import verified_name
from mailhouse.spam.rules import Context, Hit, clean_reason, token

log = logging.getLogger(__name__)

__all__ = ["MARGIN", "PREFIX", "RspamdRule", "hits_from_reply"]

#: Rule names: RSPAMD_<SYMBOL>, and the summary / failure hits.
PREFIX = "RSPAMD_"
SUMMARY = "RSPAMD"
UNAVAILABLE = "RSPAMD_UNAVAILABLE"
SKIPPED = "RSPAMD_SKIPPED"
#: Seconds before the message's deadline at which the request is abandoned, so the hit saying so
#: reaches the verdict before the pipeline cuts the rule off.
MARGIN = 0.1
#: Share of the budget the client's reverse DNS name may take before the request goes without it.
HOSTNAME_SHARE = 0.25
#: Symbols with no score named in the summary's reason (the rest are counted).
ZERO_NAMED = 8
#: Connections kept to Rspamd per event loop (a node's concurrent messages share them).
POOL_SIZE = 32


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _reason(sym: dict[str, Any]) -> str:
    desc = str(sym.get("description") or "").strip()
    opts = sym.get("options")
    opt_text = ", ".join(str(o) for o in opts[:5]) if isinstance(opts, list) else ""
    text = f"{desc} ({opt_text})" if desc and opt_text else desc or opt_text or "Rspamd symbol"
    return clean_reason(f"Rspamd: {text}")


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"not a number: {v!r}")
    return float(v)


def hits_from_reply(reply: Any) -> list[Hit]:
    """The hits of one ``/checkv2`` JSON reply (see the module docstring); ValueError if REPLY is
    not the shape Rspamd sends."""
    if not isinstance(reply, dict) or not isinstance(reply.get("symbols", {}), dict):
        raise ValueError("not an Rspamd reply")
    total = _number(reply.get("score", 0.0))
    action = str(reply.get("action", "no action"))
    hits: list[Hit] = []
    zero: list[str] = []
    seen: set[str] = set()
    for key, sym in sorted(reply.get("symbols", {}).items()):
        if not isinstance(sym, dict):
            continue
        name = str(sym.get("name") or key)
        score = round(_number(sym.get("score", 0.0)), 2)
        hit_name = PREFIX + token(name)
        if score == 0.0 or hit_name in seen:
            zero.append(name)
            continue
        seen.add(hit_name)
        hits.append(Hit(hit_name, score, _reason(sym)))
    rest = round(total - sum(h.score for h in hits), 2)
    notes = [f"Rspamd score {total:.2f}, action {action!r}"]
    messages = reply.get("messages")
    if isinstance(messages, dict) and messages:
        notes.append("; ".join(f"{k}: {v}" for k, v in sorted(messages.items())))
    if rest:
        notes.append(f"{rest:+.2f} beyond its symbols (group limits or a forced action)")
    if zero:
        named = ", ".join(zero[:ZERO_NAMED]) + (
            f" and {len(zero) - ZERO_NAMED} more" if len(zero) > ZERO_NAMED else ""
        )
        notes.append(f"no score: {named}")
    hits.append(Hit(SUMMARY, rest, clean_reason("; ".join(notes))))
    return hits


class RspamdRule:
    """Ask Rspamd at URL about each message of at most MAX_SIZE octets (see the module docstring)."""

    name = "RSPAMD"

    def __init__(self, url: str, max_size: int, lookup: Lookup) -> None:
        self.url = url.rstrip("/") + "/checkv2"
        self.max_size = max_size
        self.lookup = lookup
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]  # a finished loop's pool (tests; a node has one loop)
            limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
            client = self._clients[loop] = httpx.AsyncClient(limits=limits, trust_env=False)
        return client

    async def check(self, ctx: Context) -> list[Hit]:
        msg = ctx.message
        if self.max_size and msg.size > self.max_size:  # 0: no limit
            return [
                Hit(
                    SKIPPED,
                    0.0,
                    f"not sent to Rspamd: the message ({_mib(msg.size)}) is over "
                    f"[spam] rspamd_max_size ({_mib(self.max_size)})",
                )
            ]
        body = msg.to_bytes() if msg.in_memory else await asyncio.to_thread(msg.to_bytes)
        name = await verified_name(self.lookup, ctx.ip, ctx.remaining() * HOSTNAME_SHARE)
        headers = [
            ("IP", ctx.ip),
            ("Helo", ctx.helo or "unknown"),
            ("From", ctx.mail_from),
            ("Hostname", name or "unknown"),
        ]
        headers += [("Rcpt", r) for r in ctx.recipients]
        if ctx.queue_id:
            headers.append(("Queue-Id", ctx.queue_id))
        if ctx.user:
            headers.append(("User", ctx.user))
        wait = ctx.remaining() - MARGIN
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                resp = await self._client().post(
                    self.url,
                    content=body,
                    headers=[(k.encode(), _header_safe(v)) for k, v in headers],
                    timeout=wait,
                )
            resp.raise_for_status()
            return await _parse(resp.content)
        except (TimeoutError, httpx.TimeoutException):
            why = f"no answer within the message's {wait + MARGIN:.1f} s budget"
        except httpx.HTTPStatusError as e:
            why = f"HTTP {e.response.status_code}"
        except httpx.HTTPError as e:
            why = f"{type(e).__name__}: {e}"
        except ValueError as e:
            why = f"unreadable reply ({e})"
        log.info("rspamd unavailable for ip=%s queue=%s: %s", ctx.ip, ctx.queue_id or "-", why)
        return [Hit(UNAVAILABLE, 0.0, clean_reason(f"temporary error, scored without Rspamd: {why}"))]


def _header_safe(v: str) -> bytes:
    """An envelope value as one header line: UTF-8 (SMTPUTF8 addresses), never a control character."""
    return "".join(c for c in v if c >= " " and c != "\x7f").encode()


async def _parse(content: bytes) -> list[Hit]:
    """Rspamd's JSON reply as hits; a large reply (many symbols with options) parses off the loop."""
    try:
        data = (
            json.loads(content) if len(content) < 64 * 1024 else await asyncio.to_thread(json.loads, content)
        )
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg}") from None
    return hits_from_reply(data)
