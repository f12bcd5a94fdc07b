"""FETCH data items of one message: FETCH and NOTIFY's MessageNew FETCH (RFC 5465 §5.2) share them.

RFCs: RFC 9051 §6.4.5 (FETCH items), §7.5.2 (FETCH response: ``BODY[section]<origin>``);
RFC 3501 §6.4.5 (RFC822, RFC822.HEADER, RFC822.TEXT); RFC 3516 (BINARY, BINARY.PEEK,
BINARY.SIZE, ``NO [UNKNOWN-CTE]``); RFC 7162 §3.1.4.1 (MODSEQ item); RFC 8514 §4.2 (SAVEDATE);
RFC 8474 §5 (EMAILID, THREADID: :mod:`mailhouse.message.objectid`); RFC 8970 (PREVIEW,
PREVIEW (LAZY): :mod:`mailhouse.message.preview`).

Invariants:

* ``RFC822.SIZE`` is the stored octet count, which is exactly what ``BODY[]`` sends (the store
  keeps the message octets unchanged and records their length).
* ENVELOPE/BODY/BODYSTRUCTURE are encoded once and kept with the process's parsed-message
  cache entry (:mod:`mailhouse.message.cache`, keyed by the immutable blob).
* Nothing here sets ``\\Seen`` or writes to the client: the FETCH command does both.
* THREADID and PREVIEW of a message are computed once per cached message (kept in its
  ``structs``); for a big message they come from its cached shape (header, MIME offsets) and at
  most ``preview.PREVIEW_WINDOW`` octets of its first text part, decoded on the search pool.
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
from mailhouse.message.objectid import threadid
from mailhouse.message.preview import PREVIEW_WINDOW, preview, preview_of_part, preview_part
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
from mailhouse.runtime.offload import OffloadError
from mailhouse.store.api import MessageRecord, emailid_for_blob

from . import query
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
        "THREADID",  # RFC 8474 §5.2: from the References / In-Reply-To / Message-ID header
        "PREVIEW",  # RFC 8970: from the first text part
    )
)
# Items that set \Seen (RFC 9051 §6.4.5: BODY[section] and BINARY[section], not .PEEK).
SEEN_ITEMS = frozenset(("BODY", "BINARY", "RFC822", "RFC822.TEXT"))
# Parsed by the core but not served (none today: OBJECTID and PREVIEW are wired).
UNSUPPORTED: frozenset[str] = frozenset()
INTERNALDATE_CACHE = 65536  # memoised INTERNALDATE encodings (~100 bytes each)


def _emailid(rec: MessageRecord) -> str:
    # every record read from the store has one; a record built by hand gets its blob's
    return rec.emailid or emailid_for_blob(rec.blob_key)


def _derived(kind: str, msg: CachedMessage, eid: str) -> bytes:
    """THREADID / PREVIEW of a cached message, computed once (kept in ``structs``)."""
    hit = msg.structs.get(kind)
    if hit is None:
        if kind == "THREADID":
            hit = msg.structs[kind] = threadid(msg.tree, eid).encode("ascii")
        else:
            hit = msg.structs[kind] = preview(msg.raw, msg.tree).encode("utf-8")
    return hit


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
    it: FetchAtt,
    view: SelectedMailbox,
    rec: MessageRecord,
    msg: CachedMessage | None,
    derived: dict[str, bytes] | None = None,
) -> tuple[str, response.Value]:
    """One FETCH item; ``derived`` holds THREADID/PREVIEW already computed (big messages)."""
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
    if name == "EMAILID":  # RFC 8474 §5.1: "EMAILID" SP "(" objectid ")"
        return "EMAILID", [response.Atom(_emailid(rec))]
    if name in ("THREADID", "PREVIEW"):
        got = derived.get(name) if derived else None
        if got is None:
            assert msg is not None
            got = _derived(name, msg, _emailid(rec))
        if name == "THREADID":  # RFC 8474 §5.2: "THREADID" SP ("(" objectid ")" / nil)
            return "THREADID", [response.Atom(got.decode("ascii"))]
        return "PREVIEW", got.decode("utf-8")  # RFC 8970 §4: "PREVIEW" SP nstring
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
        try:
            derived = await _big_derived(s, rec, {it.name for it in items})
        except (FileNotFoundError, KeyError, LookupError):
            return None
        return await big_items(rec, items, s.node.big, lambda it: item_value(it, view, rec, None, derived))
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


async def _big_derived(s: SessionContext, rec: MessageRecord, names: set[str]) -> dict[str, bytes]:
    """THREADID / PREVIEW of a big message from its cached shape (header and MIME offsets) and
    one bounded range of its first text part, decoded on the search pool (never the loop)."""
    out: dict[str, bytes] = {}
    if not names & {"THREADID", "PREVIEW"}:
        return out
    shape = await s.node.big.shape(rec)
    if "THREADID" in names:
        out["THREADID"] = threadid(shape.tree, _emailid(rec)).encode("ascii")
    if "PREVIEW" in names:
        hit = shape.structs.get("PREVIEW")
        if hit is None:
            part = preview_part(shape.tree)
            text = ""
            if part is not None:
                end = min(part.body_end, part.body_start + PREVIEW_WINDOW)
                body = await s.store.blobs.read_range(rec.blob_key, part.body_start, end - part.body_start)
                make = functools.partial(preview_of_part, final=end == part.body_end)
                try:
                    text = await query.pool().run(make, body, part)
                except OffloadError:  # pool full: the work is bounded (PREVIEW_WINDOW octets)
                    text = make(body, part)
            hit = shape.structs["PREVIEW"] = text.encode("utf-8")
        out["PREVIEW"] = hit
    return out
