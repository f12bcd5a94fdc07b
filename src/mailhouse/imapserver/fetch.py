"""FETCH and UID FETCH: every data item, through ``message/``.

RFCs: RFC 9051 §6.4.5 (FETCH items, implicit \\Seen), §7.5.2 (FETCH response), §6.4.9 (UID
FETCH includes UID); RFC 3501 §6.4.5 (RFC822, RFC822.HEADER, RFC822.TEXT); RFC 3516 (BINARY,
BINARY.PEEK, BINARY.SIZE, ``NO [UNKNOWN-CTE]``); RFC 7162 §3.1.4 (MODSEQ item, CHANGEDSINCE;
FETCH MODSEQ enables CONDSTORE), §3.2.6 (VANISHED modifier); RFC 5530 (EXPUNGEISSUED).

Invariants:

* ``RFC822.SIZE`` is the stored octet count, which is exactly what ``BODY[]`` sends (the store
  keeps the message octets unchanged and records their length).
* ``BODY[...]``, ``BINARY[...]``, ``RFC822`` and ``RFC822.TEXT`` set ``\\Seen`` unless the
  mailbox is read-only (EXAMINE) or the item is a ``.PEEK``; the flag is stored *before* the
  data is sent and the changed FLAGS ride in the same FETCH response (RFC 9051 §6.4.5).
* ENVELOPE/BODY/BODYSTRUCTURE are encoded once and kept with the process's parsed-message
  cache entry (:mod:`mailhouse.message.cache`, keyed by the immutable blob).
* Output is flushed as it grows (``IMAPSession.maybe_flush``): memory stays bounded by one
  message plus the flush threshold, whatever the FETCH range.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailhouse.message.bodystructure import body as body_of
from mailhouse.message.bodystructure import bodystructure
from mailhouse.message.cache import CachedMessage
from mailhouse.message.envelope import envelope, imap_encode
from mailhouse.message.sections import (
    SectionNotFound,
    SectionSpec,
    UnknownCTE,
    binary_section,
    binary_size,
    fetch_section,
)
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Fetch, FetchAtt
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import FlagMode, MessageRecord

from .errors import Bad, No
from .selected import load

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from .selected import SelectedMailbox
    from .session import IMAPSession, Ok

# Items that need the message octets.
CONTENT_ITEMS = frozenset(
    (
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "BODY.PEEK",
        "BINARY",
        "BINARY.PEEK",
        "BINARY.SIZE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
    )
)
# Items that set \Seen (RFC 9051 §6.4.5: BODY[section] and BINARY[section], not .PEEK).
SEEN_ITEMS = frozenset(("BODY", "BINARY", "RFC822", "RFC822.TEXT"))
# Parsed by the core but not advertised here (OBJECTID RFC 8474, PREVIEW RFC 8970).
UNSUPPORTED = frozenset(("EMAILID", "THREADID", "PREVIEW"))


def _structure(kind: str, msg: CachedMessage) -> bytes:
    """ENVELOPE / BODYSTRUCTURE / BODY, encoded once per cached message (immutable blob)."""
    hit = msg.structs.get(kind)
    if hit is not None:
        return hit
    if kind == "ENVELOPE":
        val = imap_encode(envelope(msg.tree))
    elif kind == "BODYSTRUCTURE":
        val = imap_encode(bodystructure(msg.raw, msg.tree))
    else:
        val = imap_encode(body_of(msg.raw, msg.tree))
    msg.structs[kind] = val
    return val


def _sets_seen(it: FetchAtt) -> bool:
    if it.name in ("BODY", "BINARY"):
        return it.section is not None  # BODY without a section is the structure
    return it.name in SEEN_ITEMS


def _needs_content(it: FetchAtt) -> bool:
    return it.name in CONTENT_ITEMS


def _spec(it: FetchAtt) -> SectionSpec:
    sec = it.section
    assert sec is not None
    return SectionSpec(sec.part, sec.text or "", tuple(f.encode("utf-8") for f in sec.fields))


def _partial_suffix(it: FetchAtt) -> str:
    return f"<{it.partial[0]}>" if it.partial else ""  # RFC 9051 §7.5.2: origin octet only


def item_value(
    it: FetchAtt, view: SelectedMailbox, rec: MessageRecord, msg: CachedMessage | None
) -> tuple[str, response.Value]:
    name = it.name
    if name == "UID":
        return "UID", rec.uid
    if name == "FLAGS":
        return "FLAGS", view.flags_of(rec.uid)
    if name == "INTERNALDATE":
        return "INTERNALDATE", response.internaldate(
            datetime.datetime.fromtimestamp(rec.internaldate, datetime.UTC)
        )
    if name == "SAVEDATE":  # RFC 8514 §4.2: when the message was saved into this mailbox
        if not rec.saved:
            return "SAVEDATE", None
        return "SAVEDATE", response.internaldate(datetime.datetime.fromtimestamp(rec.saved, datetime.UTC))
    if name == "RFC822.SIZE":
        return "RFC822.SIZE", rec.size
    if name == "MODSEQ":
        return "MODSEQ", [rec.modseq]  # RFC 7162 §3.1.4.1: "MODSEQ (n)"
    assert msg is not None
    raw, tree = msg.raw, msg.tree
    if name in ("ENVELOPE", "BODYSTRUCTURE") or (name == "BODY" and it.section is None):
        return name, response.Raw(_structure(name, msg))
    if name in ("BODY", "BODY.PEEK"):
        data = fetch_section(raw, tree, _spec(it), it.partial)
        return f"BODY[{it.section}]{_partial_suffix(it)}", data
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        sec = it.section
        assert sec is not None
        try:
            if name == "BINARY.SIZE":
                return f"BINARY.SIZE[{sec}]", binary_size(raw, tree, sec.part)
            data = binary_section(raw, tree, sec.part, it.partial)
        except UnknownCTE:
            raise No("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None  # RFC 3516 §4.3
        except SectionNotFound:
            raise No("No such message part", "NONEXISTENT") from None
        return f"BINARY[{sec}]{_partial_suffix(it)}", response.Binary(data)
    if name == "RFC822":
        return "RFC822", raw
    if name == "RFC822.HEADER":
        return "RFC822.HEADER", fetch_section(raw, tree, SectionSpec(text="HEADER"))
    if name == "RFC822.TEXT":
        return "RFC822.TEXT", fetch_section(raw, tree, SectionSpec(text="TEXT"))
    raise Bad(f"Unsupported FETCH item {name}")


async def message_items(
    s: IMAPSession, view: SelectedMailbox, rec: MessageRecord, items: Sequence[FetchAtt], *, content: bool
) -> list[tuple[str, response.Value]] | None:
    """The FETCH items of one message, each name once (FETCH, NOTIFY's MessageNew FETCH);
    None when its octets are gone (expunged by another session meanwhile)."""
    msg = None
    if content:
        try:
            msg = await load(s.store, rec)
        except (FileNotFoundError, KeyError, LookupError, OSError):
            return None
    out: list[tuple[str, response.Value]] = []
    names: set[str] = set()
    for it in items:
        k, v = item_value(it, view, rec, msg)
        if k not in names:
            names.add(k)
            out.append((k, v))
    return out


async def cmd_fetch(s: IMAPSession, cmd: Command) -> Ok | None:
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
        view.condstore = True
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
    if not view.readonly and any(_sets_seen(it) for it in items):
        unseen = [r.uid for r in records if "\\Seen" not in r.flags and r.uid not in view.pending_expunge]
        if unseen:
            res = await s.store.store_flags(view.mailbox.id, unseen, FlagMode.ADD, frozenset({"\\Seen"}))
            for rec in res.updated:
                view.set_record(rec)
                flag_changed.add(rec.uid)
    expunge_issued = False
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
        s.send(response.fetch(seq, out, utf8=s.utf8))
        await s.maybe_flush()
    if expunge_issued:
        from .session import Ok

        return Ok("Some messages were expunged by another session", "EXPUNGEISSUED")  # RFC 5530 §3
    return None
