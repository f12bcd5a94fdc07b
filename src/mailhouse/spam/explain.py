"""Verdicts kept so they can be explained later (`mailhouse spam explain QUEUE-ID|MESSAGE-ID`).

Stored as the store's shared expiring marks (`store/limits.py`, no new table; every node and
`mailhouse` command sees them): ``spam:<queue id>`` holds the verdict as JSON, Message-ID
included. One write per message, beside its delivery; a look-up by Message-ID reads the
``spam:`` marks (an admin command, not the mail path). They expire after `KEEP` seconds, long
after a user would ask "why is this in Junk?", and the hourly housekeeping purges them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from mailhouse.spam.pipeline import Verdict
from mailhouse.spam.rules import Hit
from mailhouse.store.api import Store

__all__ = ["KEEP", "Explained", "find", "record"]

#: Seconds a verdict is kept: 30 days, the usual retention of a Junk folder.
KEEP = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Explained:
    queue_id: str
    message_id: str
    score: float
    action: str
    required: float
    hits: tuple[Hit, ...]
    unfinished: tuple[str, ...]
    when: float


def _mid(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


async def record(
    store: Store, queue_id: str, message_id: str, verdict: Verdict, now: float | None = None
) -> None:
    now = time.time() if now is None else now
    data = {
        "queue_id": queue_id,
        "message_id": _mid(message_id),
        "score": verdict.score,
        "action": verdict.action.value,
        "required": verdict.required,
        "hits": [[h.name, h.score, h.reason] for h in verdict.hits],
        "unfinished": list(verdict.unfinished),
        "when": now,
    }
    await store.set_mark(f"spam:{queue_id}", json.dumps(data), now + KEEP)


async def find(store: Store, ident: str, now: float | None = None) -> Explained | None:
    """The verdict of queue id or Message-ID IDENT (with or without <>), or None."""
    now = time.time() if now is None else now
    mark = await store.get_mark(f"spam:{ident.strip()}", now)
    if mark is None:
        mid = _mid(ident)
        if not mid:
            return None
        for m in await store.list_marks("spam:", now):
            if f'"message_id": {json.dumps(mid)}' in m.value and json.loads(m.value).get("message_id") == mid:
                mark = m
                break
        else:
            return None
    d = json.loads(mark.value)
    return Explained(
        queue_id=d["queue_id"],
        message_id=d["message_id"],
        score=float(d["score"]),
        action=d["action"],
        required=float(d["required"]),
        hits=tuple(Hit(str(n), float(s), str(r)) for n, s, r in d["hits"]),
        unfinished=tuple(d.get("unfinished", ())),
        when=float(d["when"]),
    )
