"""FETCH and UID FETCH: the command around the data items of ``fetch_items``.

RFCs: RFC 9051 §6.4.5 (FETCH items, implicit \\Seen), §7.5.2 (FETCH response), §6.4.9 (UID
FETCH includes UID); RFC 7162 §3.1.4 (MODSEQ item, CHANGEDSINCE; FETCH MODSEQ enables
CONDSTORE), §3.2.6 (VANISHED modifier); RFC 5530 (EXPUNGEISSUED).

Invariants:

* ``BODY[...]``, ``BINARY[...]``, ``RFC822`` and ``RFC822.TEXT`` set ``\\Seen`` unless the
  mailbox is read-only (EXAMINE) or the item is a ``.PEEK``; the flag is stored *before* the
  data is sent and the changed FLAGS ride in the same FETCH response (RFC 9051 §6.4.5).
* Output is flushed as it grows (``SessionContext.maybe_flush``): memory stays bounded by one
  small message plus the flush threshold, whatever the FETCH range; a message of
  ``fetch_stream.STREAM_MIN`` octets or more is never held: its octets stream from the blob
  in bounded chunks (issue 12 item 2).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Fetch, FetchAtt
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import FlagMode

from ..context import Ok
from ..errors import Bad
from ..fetch_items import CONTENT_ITEMS, SEEN_ITEMS, UNSUPPORTED, item_value, message_items
from ..fetch_stream import send_fetch
from ..namespaces import rights_on, store_flags  # RFC 4314 §4: \Seen is set implicitly only with s

#: FETCH responses between two turns of the event loop: a ``FETCH 1:*`` of a big mailbox whose
#: items are cached never suspends on its own and would hold every other session's small
#: command until its last response (issue 13 §2).
YIELD_EVERY = 64

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command
    from mailhouse.store.api import MessageRecord

    from ..context import SessionContext
    from ..selected import SelectedMailbox


def _sets_seen(it: FetchAtt) -> bool:
    if it.name in ("BODY", "BINARY"):
        return it.section is not None  # BODY without a section is the structure
    return it.name in SEEN_ITEMS


def _needs_content(it: FetchAtt) -> bool:
    return it.name in CONTENT_ITEMS


async def cmd_fetch(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Fetch)
    view = s.selected
    assert view is not None
    for it in args.items:
        if it.name in UNSUPPORTED:
            raise Bad(f"FETCH {it.name} is not supported")
    if args.vanished and not s.qresync:
        raise Bad("VANISHED requires QRESYNC to be enabled")  # RFC 7162 §3.2.6
    want_modseq = args.changedsince is not None or any(it.name == "MODSEQ" for it in args.items)
    if want_modseq and not s.condstore:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: FETCH MODSEQ / CHANGEDSINCE enable CONDSTORE
        s.send(view.enable_condstore())
    uids = view.resolve(args.sequence, args.uid)
    if args.vanished and args.changedsince is not None:
        # RFC 7162 §3.2.6: expunged UIDs of the set since CHANGEDSINCE, before the FETCHes
        gone = await s.store.expunged_since(view.mailbox.id, args.changedsince)
        top = max([*gone, view.uids[-1] if view.uids else 0, 1])
        gone = [u for u in gone if args.sequence.contains(u, top)] if not args.sequence.saved else gone
        if gone:
            s.send(response.vanished(SequenceSet.from_numbers(gone), earlier=True))
    records = [view.records[u] for u in uids if u in view.records]
    if args.changedsince is not None:
        records = [r for r in records if r.modseq > args.changedsince]
    items = list(args.items)
    if want_modseq and not any(it.name == "MODSEQ" for it in items):
        items.append(FetchAtt("MODSEQ"))  # RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ
    content = any(_needs_content(it) for it in items)
    flag_changed: set[int] = set()
    if not view.readonly and any(_sets_seen(it) for it in items) and "s" in await rights_on(s, view.mailbox):
        unseen = [r.uid for r in records if "\\Seen" not in r.flags and r.uid not in view.pending_expunge]
        if unseen:
            res = await store_flags(
                s, view, unseen, FlagMode.ADD, frozenset({"\\Seen"})
            )  # per reader if shared
            for rec in res.updated:
                view.set_record(rec)
                flag_changed.add(rec.uid)
    s.send(view.announce())  # RFC 9051 §7.3.5: keywords the view holds are announced first
    if not content and not flag_changed:
        await _send_simple(s, view, records, items)  # no octets needed: FLAGS resync and the like
        return None
    expunge_issued = False
    sent = 0
    for r in records:
        uid = r.uid
        rec = view.records.get(uid, r)
        seq = view.seq_of(uid)
        if seq is None:
            continue
        out = await message_items(s, view, rec, items, content=content)
        if out is None:
            expunge_issued = True  # expunged by another session; its blob is gone
            continue
        names = {k for k, _ in out}
        if uid in flag_changed and "FLAGS" not in names:
            out.append(("FLAGS", view.flags_of(uid)))  # RFC 9051 §6.4.5: report the implicit \Seen
        if view.condstore and uid in flag_changed and "MODSEQ" not in names:
            out.append(("MODSEQ", [rec.modseq]))
        await send_fetch(s, seq, out)  # big messages: their octets stream from the blob
        await s.maybe_flush()
        sent += 1
        if sent % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let other sessions' commands run (the view is this task's own)
    if expunge_issued:
        return Ok("Some messages were expunged by another session", "EXPUNGEISSUED")  # RFC 5530 §3
    return None


async def _send_simple(
    s: SessionContext, view: SelectedMailbox, records: list[MessageRecord], items: list[FetchAtt]
) -> None:
    """FETCH of items that need no message octets (UID, FLAGS, INTERNALDATE, RFC822.SIZE,
    MODSEQ, SAVEDATE), e.g. a sync client's ``FETCH 1:* (UID FLAGS)``: one tight loop over the
    records, the same responses as the general path (each name once, in request order)."""
    simple: list[FetchAtt] = []
    names: set[str] = set()
    for it in items:
        if it.name not in names:  # without a section, a content-free item's name is its response name
            names.add(it.name)
            simple.append(it)
    records_now, uids, utf8 = view.records, view.uids, s.utf8
    # the flag resync of every sync client, ``(UID FLAGS)``: its line built in one step (the same
    # octets response.fetch makes of UID's number and FLAGS' pre-encoded list)
    uid_flags = [it.name for it in simple] == ["UID", "FLAGS"]
    flags_of = view.flags_of
    i, n, sent = 0, len(uids), 0
    for r in records:  # ascending UIDs, like view.uids: the sequence numbers follow in one pass
        uid = r.uid
        while i < n and uids[i] < uid:
            i += 1
        if i == n or uids[i] != uid:
            continue
        seq = i + 1
        if uid_flags:
            s.send(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, uid, flags_of(uid).value))
        else:
            rec = records_now.get(uid, r)
            s.send(response.fetch(seq, [item_value(it, view, rec, None) for it in simple], utf8=utf8))
        sent += 1
        if sent % YIELD_EVERY == 0:  # output stays bounded: FLUSH_AT plus YIELD_EVERY short lines
            await s.maybe_flush()
            await asyncio.sleep(0)  # let other sessions' commands run (the view is this task's own)
