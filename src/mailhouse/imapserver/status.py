"""The ``* STATUS`` line: STATUS, LIST-STATUS (RFC 5819) and NOTIFY (RFC 5465 §5) all send it.

RFCs: RFC 9051 §6.3.11 (STATUS items, DELETED), §7.3.2 (STATUS response); RFC 3501 (RECENT,
rev1 only); RFC 8438 (SIZE); RFC 7162 §3.1.6 (HIGHESTMODSEQ); RFC 7889 §3 (APPENDLIMIT).

Invariant: RECENT for the selected mailbox is the session's own \\Recent set; for any other
mailbox it counts the messages no session has claimed yet (``RecentClaims``), claiming nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailhouse.message.objectid import mailboxid
from mailhouse.proto.imap import response

from .namespaces import reader_seen

if TYPE_CHECKING:
    from mailhouse.store.api import Mailbox, MessageRecord

    from .context import SessionContext


async def status_items(
    s: SessionContext, mb: Mailbox, items: Iterable[str]
) -> list[tuple[str, response.Value]]:
    items = list(items)
    idx = s.node.index.live.get(mb.id)
    if idx is not None and (not idx.loaded or idx.dead or idx.mailbox.uidvalidity != mb.uidvalidity):
        idx = None
    if idx is not None:
        # a mailbox a session of this node has open: its shared index, synced with everything
        # committed before this call, instead of reading every message row (issue 13 §2)
        await idx.sync()
    msgs: list[MessageRecord]
    if idx is not None and not idx.dead:
        msgs = list(idx.records.values())
    else:
        msgs = await s.store.list_messages(mb.id)
    out: list[tuple[str, response.Value]] = []
    for it in items:
        if it == "MESSAGES":
            out.append((it, len(msgs)))
        elif it == "UIDNEXT":
            out.append((it, mb.uidnext))
        elif it == "UIDVALIDITY":
            out.append((it, mb.uidvalidity))
        elif it == "UNSEEN":
            mine = await reader_seen(s, mb)  # \Seen is per reader on another account's mailbox
            out.append(
                (it, sum(1 for m in msgs if ("\\Seen" not in m.flags if mine is None else m.uid not in mine)))
            )
        elif it == "DELETED":  # RFC 9051 §6.3.11
            out.append((it, sum(1 for m in msgs if "\\Deleted" in m.flags)))
        elif it == "SIZE":  # RFC 8438 §2
            out.append((it, sum(m.size for m in msgs)))
        elif it == "RECENT":
            if not s.rev2:
                n = await s.node.claims.count_unclaimed(mb, (m.uid for m in msgs))
                if s.selected is not None and s.selected.mailbox.id == mb.id:
                    n = len(s.selected.recent)
                out.append((it, n))
        elif it == "HIGHESTMODSEQ":  # RFC 7162 §3.1.6
            out.append((it, mb.highestmodseq))
        elif it == "APPENDLIMIT":  # RFC 7889 §3
            out.append((it, s.cfg.max_message_size))
        elif it == "MAILBOXID":  # RFC 8474 §4.2: "MAILBOXID" SP "(" objectid ")"
            out.append((it, [response.Atom(mailboxid(mb.id, mb.uidvalidity))]))
        # DELETED-STORAGE (RFC 9208) is not advertised: omitted
    return out


async def status_line(s: SessionContext, mb: Mailbox, items: Iterable[str]) -> bytes:
    return response.status(mb.name, await status_items(s, mb, items), utf8=s.utf8, rev2=s.rev2)
