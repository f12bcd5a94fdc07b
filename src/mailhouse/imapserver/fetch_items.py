"""FETCH data items of one message: FETCH and NOTIFY's MessageNew FETCH (RFC 5465 §5.2) share them.

RFCs: RFC 9051 §6.4.5 (FETCH items), §7.5.2 (FETCH response: ``BODY[section]<origin>``);
RFC 3501 §6.4.5 (RFC822, RFC822.HEADER, RFC822.TEXT); RFC 3516 (BINARY, BINARY.PEEK,
BINARY.SIZE, ``NO [UNKNOWN-CTE]``); RFC 7162 §3.1.4.1 (MODSEQ item); RFC 8514 §4.2 (SAVEDATE).

Invariants:

* ``RFC822.SIZE`` is the stored octet count, which is exactly what ``BODY[]`` sends (the store
  keeps the message octets unchanged and records their length).
* ENVELOPE/BODY/BODYSTRUCTURE are encoded once and kept with the process's parsed-message
  cache entry (:mod:`mailhouse.message.cache`, keyed by the immutable blob).
* Nothing here sets ``\\Seen`` or writes to the client: the FETCH command does both.
"""

from __future__ import annotations

import datetime
import functools
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
from mailhouse.proto.imap.commands import FetchAtt
from mailhouse.store.api import MessageRecord

from .errors import Bad, No
from .fetch_stream import Streamed, big_items, is_big

if TYPE_CHECKING:
    from .context import SessionContext
    from .selected import SelectedMailbox

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
INTERNALDATE_CACHE = 65536  # memoised INTERNALDATE encodings (~100 bytes each)


def _structure(kind: str, msg: CachedMessage) -> bytes:
    """ENVELOPE / BODYSTRUCTURE / BODY, encoded once per cached message (immutable blob)."""
    hit = msg.structs.get(kind)
    if hit is not None:
        return hit
    if kind == "ENVELOPE":
        val = imap_encode(envelope(msg.head))  # the header fields only: no MIME parse
    elif kind == "BODYSTRUCTURE":
        val = imap_encode(bodystructure(msg.raw, msg.tree))
    else:
        val = imap_encode(body_of(msg.raw, msg.tree))
    msg.structs[kind] = val
    return val


@functools.lru_cache(maxsize=INTERNALDATE_CACHE)
def _internaldate(ts: float) -> response.Raw:
    """INTERNALDATE as its quoted string, pre-encoded (memoised: a header FETCH of a whole
    mailbox formats every message's date)."""
    text = response.internaldate(datetime.datetime.fromtimestamp(ts, datetime.UTC))
    return response.Raw(response.string(text))


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
        return "INTERNALDATE", _internaldate(rec.internaldate)
    if name == "SAVEDATE":  # RFC 8514 §4.2: when the message was saved into this mailbox
        if not rec.saved:
            return "SAVEDATE", None
        return "SAVEDATE", response.internaldate(datetime.datetime.fromtimestamp(rec.saved, datetime.UTC))
    if name == "RFC822.SIZE":
        return "RFC822.SIZE", rec.size
    if name == "MODSEQ":
        return "MODSEQ", [rec.modseq]  # RFC 7162 §3.1.4.1: "MODSEQ (n)"
    assert msg is not None
    if name in ("ENVELOPE", "BODYSTRUCTURE") or (name == "BODY" and it.section is None):
        return name, response.Raw(_structure(name, msg))
    raw = msg.raw
    if name in ("BODY", "BODY.PEEK"):
        # a top-level section (BODY[], [HEADER], [TEXT], [HEADER.FIELDS ...]) reads only the
        # root's header and ranges: no MIME parse (the full tree is parsed on first use)
        sec = it.section
        top = sec is not None and not sec.part
        data = fetch_section(raw, msg.head if top else msg.tree, _spec(it), it.partial)
        return f"BODY[{it.section}]{_partial_suffix(it)}", data
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        sec = it.section
        assert sec is not None
        try:
            if name == "BINARY.SIZE":
                return f"BINARY.SIZE[{sec}]", binary_size(raw, msg.tree, sec.part)
            data = binary_section(raw, msg.tree, sec.part, it.partial)
        except UnknownCTE:
            raise No("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None  # RFC 3516 §4.3
        except SectionNotFound:
            raise No("No such message part", "NONEXISTENT") from None
        return f"BINARY[{sec}]{_partial_suffix(it)}", response.Binary(data)
    if name == "RFC822":
        return "RFC822", raw
    if name == "RFC822.HEADER":
        return "RFC822.HEADER", fetch_section(raw, msg.head, SectionSpec(text="HEADER"))
    if name == "RFC822.TEXT":
        return "RFC822.TEXT", fetch_section(raw, msg.head, SectionSpec(text="TEXT"))
    raise Bad(f"Unsupported FETCH item {name}")


async def message_items(
    s: SessionContext, view: SelectedMailbox, rec: MessageRecord, items: Sequence[FetchAtt], *, content: bool
) -> list[tuple[str, response.Value | Streamed]] | None:
    """The FETCH items of one message, each name once (FETCH, NOTIFY's MessageNew FETCH);
    None when its octets are gone (expunged by another session meanwhile). A big message
    (``fetch_stream.STREAM_MIN``) is never loaded: its octets come as ``Streamed`` values
    for ``fetch_stream.send_fetch``."""
    msg = None
    if content and is_big(rec):
        return await big_items(rec, items, s.node.big, lambda it: item_value(it, view, rec, None))
    if content:
        try:
            msg = await s.node.messages(rec)
        except (FileNotFoundError, KeyError, LookupError, OSError):
            return None
    out: list[tuple[str, response.Value | Streamed]] = []
    names: set[str] = set()
    for it in items:
        k, v = item_value(it, view, rec, msg)
        if k not in names:
            names.add(k)
            out.append((k, v))
    return out
