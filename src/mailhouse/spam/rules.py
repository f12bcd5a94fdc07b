"""The rule protocol of the spam pipeline: what a rule sees (`Context`) and what it says (`Hit`).

A rule has a stable ``name`` (config, logs and ``X-Spam-Status: tests=`` use it) and an async
``check(ctx) -> list[Hit]``; each hit is a named score with a one-line human reason, so every
verdict can be explained ("why is this in Junk?", issue 14 §4). A rule never raises for bad
input (a bug is logged by the pipeline and the rule counts as silent), never blocks the event
loop (DNS is async and bounded by ``ctx.deadline``; content work goes through ``ctx.scan()``,
which runs once per message over a bounded prefix of the body — in a worker thread unless the
message is small and in memory), and never
waits past ``ctx.deadline``.

Invariants: hit names are tokens ``[A-Z0-9_]`` (SpamAssassin's ``tests=`` list is
comma-separated); reasons are one line of printable text, already sanitised of the message's
control characters.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from mailhouse.message.headers import split_header_block
from mailhouse.spam import scan as scan_mod
from mailhouse.store.spool import SpooledMessage

__all__ = ["Action", "Context", "Hit", "Rule", "clean_reason", "header_values", "parse_fields", "token"]

_NOT_TOKEN = re.compile(r"[^A-Z0-9_]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: A message up to this size held in memory is scanned on the loop (~0.1 ms): a thread hop costs
#: a GIL hand-over, up to the 5 ms switch interval on a busy loop (docs/architecture.md, Quick reads).
INLINE_SCAN_MAX = 64 * 1024
#: A reason longer than this is cut: it must fit one log line and one explain line.
REASON_MAX = 200


def token(name: str) -> str:
    """NAME as a rule-name token (``zen.spamhaus.org`` → ``ZEN_SPAMHAUS_ORG``)."""
    return _NOT_TOKEN.sub("_", name.upper())


def clean_reason(text: str) -> str:
    """One printable line of at most `REASON_MAX` characters."""
    return _CONTROL.sub(" ", text).strip()[:REASON_MAX]


def parse_fields(head: bytes) -> list[tuple[str, str]]:
    """The header fields of HEAD as (lower-case name, unfolded value), in order."""
    raw, _, _ = split_header_block(head)
    return [
        (n.decode("latin-1").lower(), _FOLD.sub(" ", v.decode("utf-8", "replace")).strip()) for n, v in raw
    ]


def header_values(head: bytes, name: str) -> list[str]:
    name = name.lower()
    return [v for n, v in parse_fields(head) if n == name]


_FOLD = re.compile(r"\r?\n[ \t]*")


class Action(enum.Enum):
    ACCEPT = "accept"
    JUNK = "junk"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule that fired: NAME, its SCORE (negative: a sign of ham), REASON in plain words."""

    name: str
    score: float
    reason: str


@dataclass(slots=True)
class Context:
    """What the rules of one message see. HEAD is the header section as received (with our
    Authentication-Results on top); MESSAGE the whole spooled message."""

    ip: str
    helo: str
    mail_from: str
    recipients: tuple[str, ...]
    message: SpooledMessage
    authserv_id: str
    deadline: float  # time.monotonic() after which no rule waits for anything
    clock: Callable[[], float] = time.time
    queue_id: str = ""  # our queue id (the Received: field's), for rules that log or pass it on
    user: str | None = None  # the authenticated client's login, None on port 25
    _fields: list[tuple[str, str]] | None = None
    _scan: asyncio.Future[scan_mod.Scan] | None = field(default=None, repr=False)

    @property
    def head(self) -> bytes:
        return self.message.head

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def fields(self) -> list[tuple[str, str]]:
        """The header fields as (lower-case name, unfolded value), in order."""
        if self._fields is None:
            self._fields = parse_fields(self.head)
        return self._fields

    def header(self, name: str) -> list[str]:
        """Every value of header field NAME (case-insensitive)."""
        name = name.lower()
        return [v for n, v in self.fields() if n == name]

    async def scan(self) -> scan_mod.Scan:
        """The bounded content scan of the message, made once in a worker thread."""
        if self._scan is None:
            if self.message.in_memory and self.message.size <= INLINE_SCAN_MAX:
                # a small message in memory: cheaper here than the GIL hand-over to a thread
                done: asyncio.Future[scan_mod.Scan] = asyncio.get_running_loop().create_future()
                done.set_result(scan_mod.scan(self.message))
                self._scan = done
            else:
                self._scan = asyncio.ensure_future(asyncio.to_thread(scan_mod.scan, self.message))
        return await asyncio.shield(self._scan)


class Rule(Protocol):
    """A named check. ``name`` is stable: it identifies the rule in config and logs."""

    @property
    def name(self) -> str: ...

    async def check(self, ctx: Context) -> list[Hit]: ...
