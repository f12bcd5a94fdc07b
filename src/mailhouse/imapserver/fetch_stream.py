"""FETCH of big messages without holding them: octets stream from the blob to the socket.

RFCs: RFC 9051 §6.4.5 (BODY[section]<partial>, RFC822), §7.5.2 (FETCH response, literals);
RFC 3516 §4.2-§4.3 (BINARY[section]<partial>, literal8 ``~{n}``, BINARY.SIZE, UNKNOWN-CTE).

Issue 12 item 2: ``FETCH BODY[]`` of a 40 MB message used to read the blob whole, parse it on
the event loop and hold several copies (+135 MB RSS). A message of :data:`STREAM_MIN` octets or
more now never enters the parsed-message cache:

* ``BODY[]``, ``BODY.PEEK[]``, ``RFC822``, ``BINARY[]`` (whole or ``<off.len>``) are ranges of the
  stored octets: :class:`Streamed` values, sent as a literal whose octets are read in
  :data:`CHUNK` pieces (``BlobStore.read_range``) and written one at a time, each after the
  transport drained (``SessionContext.flush``: the runtime's write back-pressure, and its
  stalled-writer timeout for a client that stops reading).
* Anything that needs the MIME structure (ENVELOPE, BODYSTRUCTURE, BODY, section fetches) uses
  the message's :class:`MessageShape` — the MIME tree (offsets only) and the encoded structure
  items — built once per node off the event loop (in a ``runtime.cpupool`` worker process that
  reads the blob file itself; a thread of ``runtime.offload`` for blobs without a path; item 1:
  nothing O(message size) on the loop, nor holding the GIL the loop needs) and cached without
  the octets. Parsing reads the message once; at most
  :data:`PARSE_WORKERS` parses run per node, so that transient memory is bounded by the message
  size limit per node, not per session. A section is then a range of the blob (streamed when
  big); ``HEADER.FIELDS`` reads only the header block; ``BINARY[part]`` decodes the range chunk
  by chunk (``message.sections.TransferDecoder``), after one counting pass for its size.

Invariants: a streamed literal's announced size is exactly the octets sent (a blob that vanishes
mid-literal aborts the connection: the framing cannot be repaired); the octets are those a
whole-message FETCH of the same item sends for a small message (same slicing rules).
"""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

from mailhouse.message.bodystructure import body as body_of
from mailhouse.message.bodystructure import bodystructure
from mailhouse.message.envelope import envelope, imap_encode
from mailhouse.message.parse import MessagePart, parse_message
from mailhouse.message.sections import (
    SectionNotFound,
    SectionSpec,
    TransferDecoder,
    UnknownCTE,
    header_fields,
    header_fields_message,
    resolve_part,
    section_range,
)
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import FetchAtt
from mailhouse.runtime import cpupool
from mailhouse.runtime.cpupool import RemoteError
from mailhouse.runtime.offload import Offload, OffloadError
from mailhouse.store.api import MessageRecord, Store

from .errors import No, Transient

T = TypeVar("T")


class Output(Protocol):
    """What streaming needs of the session (``context.SessionContext`` has it)."""

    store: Store

    @property
    def utf8(self) -> bool: ...

    def send(self, data: bytes) -> None: ...

    async def flush(self) -> None: ...


#: Messages this big or bigger are streamed and never loaded whole (the parsed-message cache
#: keeps the small ones, where one read and one parse serve every later FETCH and SEARCH).
STREAM_MIN: Final = 1024 * 1024
#: Octets read from the blob and written to the socket at a time.
CHUNK: Final = 256 * 1024
#: A section of a big message up to this size is read and sent as an ordinary value.
INLINE_MAX: Final = 64 * 1024
#: Structures of big messages kept per node (tree and encoded items: a few KB each).
SHAPE_CACHE: Final = 256
#: Big-message parses running at once per node (each holds one message while it runs).
PARSE_WORKERS: Final = 1
#: Parses waiting for a worker before FETCH answers NO [UNAVAILABLE].
PARSE_QUEUE: Final = 32
#: Seconds one parse may take (a 40 MB message takes well under one on this machine).
PARSE_BUDGET: Final = 60.0


@dataclass(frozen=True, slots=True)
class Streamed:
    """A literal whose octets come from the blob: stored range ``[start, start+length)``,
    decoded with ``cte`` when set, ``skip`` decoded octets dropped, ``size`` octets sent."""

    key: str
    start: int
    length: int
    size: int
    cte: str | None = None
    skip: int = 0
    binary: bool = False  # BINARY: literal8 when the octets contain NUL (RFC 3516 §4.2)
    nul: bool = False


@dataclass(slots=True, eq=False)
class MessageShape:
    """What FETCH needs of a big message besides its octets: the MIME tree (byte offsets) and
    the encoded ENVELOPE/BODYSTRUCTURE/BODY; decoded sizes of BINARY parts once counted."""

    tree: MessagePart
    structs: dict[str, bytes]
    decoded: dict[tuple[int, ...], tuple[int, bool]] = field(default_factory=dict)


def build_shape(raw: bytes) -> MessageShape:
    """Parse and encode (runs in the offload pool; ``raw`` is dropped when it returns)."""
    tree = parse_message(raw)
    structs = {
        "ENVELOPE": imap_encode(envelope(tree)),
        "BODYSTRUCTURE": imap_encode(bodystructure(raw, tree)),
        "BODY": imap_encode(body_of(raw, tree)),
    }
    return MessageShape(tree, structs)


def build_shape_file(path: str) -> MessageShape:
    """:func:`build_shape` of a blob file (runs in a CPU-pool worker process, which reads it)."""
    with open(path, "rb") as f:
        return build_shape(f.read())


class BigMessages:
    """The node's big-message structures (LRU by immutable blob key) and parse pool."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._shapes: collections.OrderedDict[str, MessageShape] = collections.OrderedDict()
        self._whole: dict[str, tuple[int, bool]] = {}  # BINARY[] of whole messages: (size, NUL?)
        self._lock = asyncio.Semaphore(PARSE_WORKERS)
        self._pool = Offload(workers=PARSE_WORKERS, queue=PARSE_QUEUE, budget=PARSE_BUDGET, name="imap-parse")

    async def offload(self, fn: Callable[[bytes], T], raw: bytes) -> T:
        """``fn(raw)`` in the node's parse pool (MIME work on a big message, e.g. APPEND's
        ``base64_binary_parts``): never on the event loop (issue 12 item 1)."""
        try:
            return await self._pool.run(fn, raw)
        except OffloadError:
            raise Transient("Server busy parsing messages, try again later") from None

    async def shape(self, rec: MessageRecord) -> MessageShape:
        key = rec.blob_key
        hit = self._shapes.get(key)
        if hit is not None:
            self._shapes.move_to_end(key)
            return hit
        async with self._lock:  # one message held per node at a time while it is parsed
            hit = self._shapes.get(key)
            if hit is not None:
                return hit
            local_path = getattr(self.store.blobs, "local_path", None)
            path = local_path(key) if local_path is not None else None
            try:
                if path is not None:  # a file: parsed in a worker process that reads it itself
                    shape = await cpupool.shared().run(build_shape_file, str(path), budget=PARSE_BUDGET)
                else:
                    shape = await self._parse_here(key)
            except (OffloadError, RemoteError):
                raise Transient("Server busy parsing messages, try again later") from None
        self._shapes[key] = shape
        while len(self._shapes) > SHAPE_CACHE:
            self._shapes.popitem(last=False)
        return shape

    async def _parse_here(self, key: str) -> MessageShape:
        """Blobs that cannot be opened by path: read here, parsed on a thread."""
        raw = await self.store.blobs.get(key)
        try:
            return await self._pool.run(build_shape, raw)
        finally:
            del raw

    async def count(self, key: str, start: int, end: int, cte: str | None) -> tuple[int, bool]:
        """Octets of a range after decoding, and whether any is NUL: one streaming pass."""
        dec = TransferDecoder(cte) if cte else None
        size, nul = 0, False
        pos = start
        while pos < end:
            data = await self.store.blobs.read_range(key, pos, min(CHUNK, end - pos))
            if not data:
                break
            pos += len(data)
            out = dec.feed(data) if dec else data
            size += len(out)
            nul = nul or b"\0" in out
        if dec:
            out = dec.finish()
            size += len(out)
            nul = nul or b"\0" in out
        return size, nul

    async def whole_binary(self, rec: MessageRecord) -> tuple[int, bool]:
        hit = self._whole.get(rec.blob_key)
        if hit is None:
            hit = await self.count(rec.blob_key, 0, rec.size, None)
            if len(self._whole) >= SHAPE_CACHE:
                self._whole.clear()
            self._whole[rec.blob_key] = hit
        return hit


def is_big(rec: MessageRecord) -> bool:
    return rec.size >= STREAM_MIN


def _clip(start: int, end: int, partial: tuple[int, int] | None) -> tuple[int, int]:
    """RFC 9051 §6.4.5: ``<off.len>`` of the range; an offset past the end gives nothing."""
    if partial is None:
        return start, end
    off, n = partial
    a = min(start + off, end)
    return a, min(a + n, end)


async def _range_value(store: Store, key: str, start: int, end: int) -> bytes | Streamed:
    if end - start <= INLINE_MAX:
        return await store.blobs.read_range(key, start, end - start)
    return Streamed(key, start, end - start, end - start)


def _spec(it: FetchAtt) -> SectionSpec:
    sec = it.section
    assert sec is not None
    return SectionSpec(sec.part, sec.text or "", tuple(f.encode("utf-8") for f in sec.fields))


async def big_value(
    it: FetchAtt,
    rec: MessageRecord,
    big: BigMessages,
    simple: Callable[[FetchAtt], tuple[str, response.Value]],
) -> tuple[str, response.Value | Streamed]:
    """One FETCH item of a big message (``simple`` answers the items that need no octets)."""
    name = it.name
    store, key = big.store, rec.blob_key
    suffix = f"<{it.partial[0]}>" if it.partial else ""  # RFC 9051 §7.5.2: origin octet only
    if name in ("ENVELOPE", "BODYSTRUCTURE") or (name == "BODY" and it.section is None):
        return name, response.Raw((await big.shape(rec)).structs[name])
    if name == "RFC822":
        return "RFC822", await _range_value(store, key, 0, rec.size)
    if name in ("RFC822.HEADER", "RFC822.TEXT"):
        tree = (await big.shape(rec)).tree
        a, b = section_range(tree, SectionSpec(text=name.split(".")[1]))
        return name, await _range_value(store, key, a, b)
    if name in ("BODY", "BODY.PEEK"):
        spec = _spec(it)
        label = f"BODY[{it.section}]{suffix}"
        if not spec.part and not spec.text:
            a, b = _clip(0, rec.size, it.partial)
            return label, await _range_value(store, key, a, b)
        tree = (await big.shape(rec)).tree
        try:
            if spec.text.startswith("HEADER.FIELDS"):
                m = header_fields_message(tree, spec)
                block = await store.blobs.read_range(key, m.header_start, m.header_end - m.header_start)
                data = header_fields(block, m, spec.fields, spec.text.endswith(".NOT"), base=m.header_start)
                return label, data[it.partial[0] : sum(it.partial)] if it.partial else data
            a, b = section_range(tree, spec)
        except SectionNotFound:
            return label, b""  # what the whole-message path (and Dovecot) answers
        a, b = _clip(a, b, it.partial)
        return label, await _range_value(store, key, a, b)
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        sec = it.section
        assert sec is not None
        if not sec.part:
            if name == "BINARY.SIZE":
                return f"BINARY.SIZE[{sec}]", rec.size  # the stored octets, as RFC822.SIZE
            size, nul = await big.whole_binary(rec)
            a, b = _clip(0, rec.size, it.partial)
            return f"BINARY[{sec}]{suffix}", Streamed(key, a, b - a, b - a, binary=True, nul=nul)
        shape = await big.shape(rec)
        try:
            p = resolve_part(shape.tree, sec.part)
            cte = None if p.is_multipart or p.is_message else p.cte
            if cte is not None:
                TransferDecoder(cte)  # RFC 3516 §4.3: an encoding we cannot decode is refused
        except UnknownCTE:
            raise No("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
        except SectionNotFound:
            raise No("No such message part", "NONEXISTENT") from None
        info = shape.decoded.get(sec.part)
        if info is None:
            info = shape.decoded[sec.part] = await big.count(key, p.body_start, p.body_end, cte)
        size, nul = info
        if name == "BINARY.SIZE":
            return f"BINARY.SIZE[{sec}]", size
        skip, end = _clip(0, size, it.partial)
        return f"BINARY[{sec}]{suffix}", Streamed(
            key, p.body_start, p.body_end - p.body_start, end - skip, cte, skip, True, nul
        )
    return simple(it)


async def big_items(
    rec: MessageRecord,
    items: Sequence[FetchAtt],
    big: BigMessages,
    simple: Callable[[FetchAtt], tuple[str, response.Value]],
) -> list[tuple[str, response.Value | Streamed]] | None:
    """The FETCH items of a big message, each name once; None when its blob is gone."""
    out: list[tuple[str, response.Value | Streamed]] = []
    names: set[str] = set()
    try:
        await big.store.blobs.read_range(rec.blob_key, 0, 0)  # expunged by another session?
        for it in items:
            k, v = await big_value(it, rec, big, simple)
            if k not in names:
                names.add(k)
                out.append((k, v))
    except (FileNotFoundError, KeyError, LookupError):
        return None
    return out


async def send_fetch(s: Output, seq: int, items: Sequence[tuple[str, response.Value | Streamed]]) -> None:
    """``* seq FETCH (...)`` with the :class:`Streamed` values written chunk by chunk."""
    streams = [v for _, v in items if isinstance(v, Streamed)]
    if not streams:
        s.send(response.fetch(seq, items, utf8=s.utf8))  # type: ignore[arg-type]  # no Streamed
        return
    marks: list[bytes] = []
    encoded: list[tuple[str, response.Value]] = []
    for k, v in items:
        if isinstance(v, Streamed):
            mark = b"\0" + secrets.token_hex(12).encode() + b"\0"  # never in encoded output
            marks.append(mark)
            encoded.append((k, response.Raw(mark)))
        else:
            encoded.append((k, v))
    rest = response.fetch(seq, encoded, utf8=s.utf8)
    for mark, v in zip(marks, streams, strict=True):
        head, rest = rest.split(mark, 1)
        prefix = b"~{%d}\r\n" if v.binary and v.nul else b"{%d}\r\n"  # RFC 3516 §4.2: literal8
        s.send(head + prefix % v.size)
        await stream_literal(s, s.store, v)
    s.send(rest)


async def stream_literal(s: Output, store: Store, v: Streamed) -> None:
    """Write exactly ``v.size`` octets of the blob range, one chunk in memory at a time."""
    dec = TransferDecoder(v.cte) if v.cte else None
    skip, left = v.skip, v.size
    pos, end = v.start, v.start + v.length

    async def put(data: bytes) -> None:
        nonlocal skip, left
        if skip:
            cut = min(skip, len(data))
            data, skip = data[cut:], skip - cut
        data = data[:left]
        if data:
            left -= len(data)
            s.send(data)
            await s.flush()  # waits while the transport is above its high-water mark

    try:
        while pos < end and left > 0:
            data = await store.blobs.read_range(v.key, pos, min(CHUNK, end - pos))
            if not data:
                break
            pos += len(data)
            await put(dec.feed(data) if dec else data)
        if dec and left > 0:
            await put(dec.finish())
    except (FileNotFoundError, LookupError):
        pass
    if left:
        # The literal's size is on the wire already: the framing cannot be repaired.
        raise ConnectionAbortedError(f"blob {v.key} ended {left} octets early during FETCH")
