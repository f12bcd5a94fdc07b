"""MIME tree of a raw message with exact byte ranges.

RFCs: RFC 5322 (header/body split), RFC 2045 (MIME headers, §5.2 default
``text/plain; charset=us-ascii``, §6 Content-Transfer-Encoding default ``7bit``), RFC 2046 §5.1.1
(boundary delimiters: CRLF "--" boundary, close delimiter with trailing "--", transport padding,
preamble/epilogue), §5.1.5 (multipart/digest parts default to message/rfc822), RFC 2183
(Content-Disposition), RFC 2231 (parameter continuations and charset/language), RFC 3282
(Content-Language), RFC 2557 (Content-Location), RFC 1864 (Content-MD5), RFC 6532 (message/global).

Why not ``email.parser``: IMAP ``BODY[1.2.MIME]``, ``BODY[]<start.len>``, BODYSTRUCTURE sizes and
line counts are defined over the exact octets of the stored message. The stdlib parser rewrites
line endings, drops preamble positions, and keeps no offsets, so we walk the bytes ourselves; we do
use the stdlib for charsets (``codecs``) and dates elsewhere.

Invariants:
- ``parse_message`` never raises on any ``bytes`` and never recurses: the tree is built with an
  explicit work list. Every range satisfies ``0 <= header_start <= header_end == body_start <=
  body_end <= len(raw)``, and children lie inside their parent's body.
- Nesting deeper than :data:`MAX_DEPTH` or beyond :data:`MAX_PARTS` parts is not split: such a
  multipart or message part becomes an opaque ``application/octet-stream`` leaf (``opaque=True``)
  whose body is the remaining octets.
- Bare LF line endings are accepted everywhere CRLF is.
- Content-* headers of a top-level (or embedded) message are ignored unless it has a
  MIME-Version or a Content-Type field (RFC 2045 §4; Dovecot does the same); parts inside a
  multipart are always MIME.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from mailhouse.message.headers import decode_bytes, decode_words, split_header_block, unfold

__all__ = ["MAX_DEPTH", "MAX_PARTS", "MessagePart", "parse_message", "parse_params", "iter_parts"]

# Nesting limit: deeper MIME structure is treated as one opaque body. Dovecot uses 100 too
# (mail_max_nested_mime_parts? message_parser max_nested_mime_parts = 100).
MAX_DEPTH = 100
# Total part limit per message: bounds memory and BODYSTRUCTURE size (Dovecot: 10000).
MAX_PARTS = 10_000


@dataclass(slots=True, eq=False)
class MessagePart:
    """One MIME entity. Offsets index into the raw message passed to :func:`parse_message`.

    ``type``/``subtype`` are lowercased ``str``; ``type_raw``/``subtype_raw`` keep the octets as
    written (None when defaulted), which is what IMAP BODYSTRUCTURE echoes.
    ``params``: lowercased name → decoded value (RFC 2231 joined and charset-decoded, RFC 2047
    words in values decoded). ``params_raw``: ``(name, value)`` as written, with RFC 2231
    continuations merged and extended values left %-encoded under ``name*`` (Dovecot style).
    For a message/rfc822 or message/global part the embedded message is ``children[0]``.
    """

    header_start: int
    header_end: int = 0
    body_start: int = 0
    body_end: int = 0
    depth: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    header_spans: list[tuple[int, int]] = field(default_factory=list)
    type: str = "text"
    subtype: str = "plain"
    type_raw: bytes | None = None
    subtype_raw: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    params_raw: list[tuple[bytes, bytes]] = field(default_factory=list)
    cte: str = "7bit"
    cte_raw: bytes | None = None
    disposition: str | None = None
    disposition_raw: bytes | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    disposition_params_raw: list[tuple[bytes, bytes]] = field(default_factory=list)
    language: list[bytes] | None = None
    location: bytes | None = None
    content_id: bytes | None = None
    description: bytes | None = None
    md5: bytes | None = None
    is_mime: bool = True
    opaque: bool = False
    children: list[MessagePart] = field(default_factory=list)

    # -- convenience -------------------------------------------------------------------------
    @property
    def mime_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart" and not self.opaque

    @property
    def is_message(self) -> bool:
        """message/rfc822 or message/global (RFC 6532 §3.5) with a parsed embedded message."""
        return self.type == "message" and self.subtype in ("rfc822", "global") and bool(self.children)

    @property
    def embedded(self) -> MessagePart | None:
        return self.children[0] if self.is_message else None

    @property
    def body_size(self) -> int:
        return self.body_end - self.body_start

    @property
    def header_size(self) -> int:
        return self.header_end - self.header_start

    @property
    def charset(self) -> str:
        return self.params.get("charset", "us-ascii")

    @property
    def filename(self) -> str | None:
        return self.disposition_params.get("filename") or self.params.get("name")

    def get(self, name: bytes | str) -> bytes | None:
        """First value of header ``name``, unfolded, raw bytes."""
        want = (name.encode() if isinstance(name, str) else name).lower()
        for n, v in self.headers:
            if n.lower() == want:
                return unfold(v)
        return None

    def get_all(self, name: bytes | str) -> list[bytes]:
        want = (name.encode() if isinstance(name, str) else name).lower()
        return [unfold(v) for n, v in self.headers if n.lower() == want]


def iter_parts(root: MessagePart) -> list[MessagePart]:
    """All parts in pre-order (document order), iteratively."""
    out: list[MessagePart] = []
    stack = [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(reversed(p.children))
    return out


# ---------------------------------------------------------------------------------------------
# RFC 2045 §5.1 tokens / RFC 5322 CFWS

_TSPECIALS = frozenset(b'()<>@,;:\\"/[]?= \t\r\n')


def _skip_cfws(s: bytes, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c in (0x20, 0x09, 0x0D, 0x0A):
            i += 1
        elif c == 0x28:  # "(" comment, nested, with quoted-pairs (RFC 5322 §3.2.2)
            depth = 0
            while i < n:
                c = s[i]
                if c == 0x5C:
                    i += 2
                    continue
                if c == 0x28:
                    depth += 1
                elif c == 0x29:
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return min(i, n)


def _token(s: bytes, i: int) -> tuple[bytes, int]:
    j = i
    n = len(s)
    while j < n and s[j] not in _TSPECIALS and s[j] > 0x20 and s[j] != 0x7F:
        j += 1
    return s[i:j], j


def _quoted(s: bytes, i: int) -> tuple[bytes, int]:
    """Quoted string at s[i] == '"'; returns the unescaped content (RFC 5322 §3.2.4)."""
    out = bytearray()
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == 0x5C and i + 1 < n:
            out.append(s[i + 1])
            i += 2
            continue
        if c == 0x22:
            return bytes(out), i + 1
        if c not in (0x0D, 0x0A):
            out.append(c)
        i += 1
    return bytes(out), i


def _raw_params(s: bytes, i: int) -> list[tuple[bytes, bytes]]:
    """``*(";" attribute "=" value)`` leniently: junk is skipped up to the next ";"."""
    out: list[tuple[bytes, bytes]] = []
    n = len(s)
    while True:
        i = _skip_cfws(s, i)
        if i >= n:
            return out
        if s[i] != 0x3B:
            j = s.find(b";", i)
            if j < 0:
                return out
            i = j
        i = _skip_cfws(s, i + 1)
        key, i = _token(s, i)
        i = _skip_cfws(s, i)
        if not key or i >= n or s[i] != 0x3D:
            continue
        i = _skip_cfws(s, i + 1)
        if i < n and s[i] == 0x22:
            val, i = _quoted(s, i)
        else:
            j = i
            while j < n and s[j] not in b"; \t\r\n":
                j += 1
            val, i = s[i:j], j
        out.append((key, val))


_SECTION_RE = re.compile(rb"^(.*?)\*(?:(\d+)(\*?))?$", re.S)


def _merge_2231(raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    """RFC 2231 §3 (continuations) and §4 (charset'language'%XX). Returns (raw-merged, decoded)."""
    plain: list[tuple[bytes, bytes]] = []
    groups: dict[bytes, list[tuple[int, bool, bytes, bytes]]] = {}
    order: list[tuple[bytes, bytes | None]] = []  # (key or group-key-lower, None for plain)
    for key, val in raw:
        m = _SECTION_RE.match(key) if b"*" in key else None
        if m is None:
            plain.append((key, val))
            order.append((key, val))
            continue
        base = m.group(1)
        if m.group(2) is None:  # name*=...
            idx, ext = 0, True
        else:
            idx, ext = int(m.group(2)[:9]), bool(m.group(3))
        g = base.lower()
        if g not in groups:
            groups[g] = []
            order.append((g, None))
        groups[g].append((idx, ext, base, val))

    merged: list[tuple[bytes, bytes]] = []
    decoded: dict[str, str] = {}
    for key, plain_val in order:
        if plain_val is not None:
            merged.append((key, plain_val))
            k = key.decode("ascii", "replace").lower()
            if k not in decoded:
                decoded[k] = decode_words(plain_val) if b"=?" in plain_val else decode_bytes(plain_val)
            continue
        segs = sorted(groups[key], key=lambda t: t[0])
        base = segs[0][2]
        if [s[0] for s in segs] != list(range(len(segs))):
            # missing/duplicate section numbers: keep them as separate raw parameters
            for idx, ext, b, v in segs:
                merged.append((b + b"*" + str(idx).encode() + (b"*" if ext else b""), v))
            continue
        have_ext = any(s[1] for s in segs)
        rawv = bytearray()
        if have_ext and not segs[0][1]:
            rawv += b"''"
        charset = None
        data = bytearray()
        for n, (_, ext, _, v) in enumerate(segs):
            if ext:
                rawv += v
                if n == 0:
                    parts = v.split(b"'", 2)
                    if len(parts) == 3:
                        charset = parts[0].decode("ascii", "replace") or None
                        v = parts[2]
                data += unquote_to_bytes(v)
            else:
                rawv += v.replace(b"%", b"%25") if have_ext else v
                data += v
        merged.append((base + b"*" if have_ext else base, bytes(rawv)))
        decoded[base.decode("ascii", "replace").lower()] = decode_bytes(bytes(data), charset)
    return merged, decoded


def parse_params(s: bytes, i: int = 0) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    """Parse MIME parameters starting at ``s[i]`` → (Dovecot-style raw list, decoded dict)."""
    return _merge_2231(_raw_params(s, i))


def _apply_content_type(part: MessagePart, value: bytes) -> bool:
    v = unfold(value)
    i = _skip_cfws(v, 0)
    t, i = _token(v, i)
    i = _skip_cfws(v, i)
    if not t or i >= len(v) or v[i] != 0x2F:
        return False  # RFC 2045 §5.2: syntactically invalid → default text/plain us-ascii
    i = _skip_cfws(v, i + 1)
    st, i = _token(v, i)
    if not st:
        return False
    part.type_raw, part.subtype_raw = t, st
    part.type = t.decode("latin-1").lower()
    part.subtype = st.decode("latin-1").lower()
    part.params_raw, part.params = parse_params(v, i)
    return True


def _apply_mime_headers(part: MessagePart, default_digest: bool) -> None:
    ct_seen = False
    for name, value in part.headers:
        ln = name.lower()
        if not ln.startswith(b"content-"):
            continue
        sub = ln[8:]
        if sub == b"type":
            if not ct_seen:
                ct_seen = True
                if not _apply_content_type(part, value):
                    part.params = {"charset": "us-ascii"}
        elif sub == b"transfer-encoding":
            if part.cte_raw is None:
                v = unfold(value)
                tok, _ = _token(v, _skip_cfws(v, 0))
                if tok:
                    part.cte_raw = tok
                    part.cte = tok.decode("latin-1").lower()
        elif sub == b"disposition":
            if part.disposition_raw is None:
                v = unfold(value)
                i = _skip_cfws(v, 0)
                tok, i = _token(v, i)
                if tok:
                    part.disposition_raw = tok
                    part.disposition = tok.decode("latin-1").lower()
                    part.disposition_params_raw, part.disposition_params = parse_params(v, i)
        elif sub == b"language":
            if part.language is None:
                langs = [x.strip(b" \t") for x in unfold(value).split(b",")]
                part.language = [x for x in langs if x] or None
        elif sub == b"location":
            if part.location is None:
                part.location = unfold(value)
        elif sub == b"id":
            if part.content_id is None:
                part.content_id = unfold(value)
        elif sub == b"description":
            if part.description is None:
                part.description = unfold(value)
        elif sub == b"md5":
            if part.md5 is None:
                part.md5 = unfold(value)
    if not ct_seen:
        if default_digest:
            part.type, part.subtype = "message", "rfc822"  # RFC 2046 §5.1.5
            part.params = {}
        else:
            part.params = {"charset": "us-ascii"}  # RFC 2045 §5.2


def _reset_mime(part: MessagePart) -> None:
    headers, spans = part.headers, part.header_spans
    fresh = MessagePart(
        header_start=part.header_start,
        header_end=part.header_end,
        body_start=part.body_start,
        body_end=part.body_end,
        depth=part.depth,
    )
    for slot in MessagePart.__slots__:
        setattr(part, slot, getattr(fresh, slot))
    part.headers, part.header_spans = headers, spans
    part.params = {"charset": "us-ascii"}
    part.is_mime = False


def _make_opaque(part: MessagePart) -> None:
    part.opaque = True
    part.type, part.subtype = "application", "octet-stream"
    part.type_raw = part.subtype_raw = None
    part.params, part.params_raw = {}, []
    part.children = []


_BOUNDARY_PARAM_RE = re.compile(rb'boundary\s*=\s*"?([^";\s]+)', re.I)


_SCAN_WINDOW = 1 << 20


def _boundary_params(raw: bytes) -> set[bytes]:
    """``set(_BOUNDARY_PARAM_RE.findall(raw))``, found window by window: each step holds the
    GIL for about a millisecond instead of one regex scan of the whole message (a big message
    is parsed off the event loop, which shares the GIL; issue 12 item 1)."""
    out: set[bytes] = set()
    last_end = 0
    n = len(b"boundary")
    for base in range(0, len(raw), _SCAN_WINDOW):
        window = raw[base : base + _SCAN_WINDOW + n - 1].lower()  # re.I on bytes: ASCII only
        i = window.find(b"boundary")
        while 0 <= i < _SCAN_WINDOW:
            if base + i >= last_end:  # findall: leftmost matches that do not overlap
                m = _BOUNDARY_PARAM_RE.match(raw, base + i)
                if m is not None:
                    out.add(m.group(1))
                    last_end = m.end()
            i = window.find(b"boundary", i + 1)
    return out


def _find_delimiters(
    raw: bytes, boundary: bytes, start: int, end: int, longer: list[bytes]
) -> list[tuple[int, int, bool]]:
    """RFC 2046 §5.1.1 delimiter lines in raw[start:end]: (line_start, line_next, is_close).

    ``longer``: other boundaries in the message that start with ``boundary``. A line that only
    prefix-matches ours but fully starts with one of those belongs to a nested multipart
    (Dovecot gets the same result by trying the innermost boundary first).
    """
    # RFC 2046 §5.1.1 note to implementors: compare the boundary with the beginning of each
    # line; an exact match of the entire line is not required (Dovecot does the same).
    # bytes.find, not a multi-line regex: a regex tries "^" at every octet (~100 MB/s), which
    # made a deeply nested multipart cost seconds per level (issue 12 item 4).
    delim = b"--" + boundary
    after_nl = b"\n" + delim
    out: list[tuple[int, int, bool]] = []
    pos = start
    while pos <= end:
        if (pos == 0 or raw[pos - 1] == 0x0A) and raw.startswith(delim, pos, end):
            ms = pos  # a delimiter right at a line start where the scan resumes
        else:
            i = raw.find(after_nl, pos, end)
            if i < 0:
                break
            ms = i + 1
        de = ms + len(delim)
        close = raw.startswith(b"--", de, end)
        nl = raw.find(b"\n", de + 2 if close else de, end)
        nxt = end if nl < 0 else nl + 1
        if longer and any(raw.startswith(b"--" + lb, ms) for lb in longer):
            pos = nxt
            if nxt >= end:
                break
            continue
        out.append((ms, nxt, close))
        if close:
            break
        pos = nxt
        if nxt >= end:
            break
    return out


def _line_break_before(raw: bytes, pos: int, floor: int) -> int:
    """Start of the line break that precedes ``pos`` (it belongs to the delimiter)."""
    if pos - 2 >= floor and raw[pos - 2 : pos] == b"\r\n":
        return pos - 2
    if pos - 1 >= floor and raw[pos - 1] == 0x0A:
        return pos - 1
    return pos


def parse_message(raw: bytes) -> MessagePart:
    """Parse ``raw`` into a :class:`MessagePart` tree. Never raises for any ``bytes`` input."""
    root = MessagePart(header_start=0)
    count = 1
    known_boundaries: set[bytes] | None = None
    # work item: (part, end, is_message_root, default_digest, slack, co-ending parts).
    # ``slack`` is the length of the line break stripped before the next enclosing delimiter;
    # see _extend_over_close().
    work: list[tuple[MessagePart, int, bool, bool, int, list[MessagePart]]] = [
        (root, len(raw), True, False, 0, [root])
    ]
    while work:
        part, end, is_root, digest, slack, coend = work.pop()
        fields, spans, hend = split_header_block(raw, part.header_start, end)
        part.headers, part.header_spans = fields, spans
        part.header_end = part.body_start = hend
        part.body_end = end
        _apply_mime_headers(part, digest)
        if is_root:
            names = {n.lower() for n, _ in fields}
            if b"mime-version" not in names and b"content-type" not in names:
                _reset_mime(part)  # RFC 2045 §4: not a MIME message; Content-* have no meaning
        if part.type == "multipart":
            boundary = None
            for k, v in part.params_raw:
                if k.lower() == b"boundary":
                    boundary = v
                    break
            if not boundary or part.depth >= MAX_DEPTH or count >= MAX_PARTS:
                _make_opaque(part)
                continue
            if known_boundaries is None:
                known_boundaries = _boundary_params(raw)
            longer = [b for b in known_boundaries if len(b) > len(boundary) and b.startswith(boundary)]
            delims = _find_delimiters(raw, boundary, part.body_start, end, longer)
            if not delims:
                _make_opaque(part)  # no delimiter at all: nothing to split (RFC 2046 §5.1.1)
                continue
            last_ls, last_nxt, last_close = delims[-1]
            if slack and last_close and last_nxt == end and raw[end - 1] != 0x0A:
                # The close delimiter is the last line and its line break was taken as the
                # enclosing delimiter's leading CRLF. Dovecot counts that line break in this
                # part (and in a message/rfc822 part wrapping it); do the same so sizes, line
                # counts and BODY[n] agree with it.
                end += slack
                for p in coend:
                    p.body_end = end
            ranges: list[tuple[int, int, int]] = []
            for idx, (_ls, nxt, close) in enumerate(delims):
                if close:
                    break
                if idx + 1 < len(delims):
                    nstart = delims[idx + 1][0]
                    pend = max(nxt, _line_break_before(raw, nstart, nxt))
                    ranges.append((nxt, pend, nstart - pend))
                else:
                    # RFC 2046: missing close delimiter tolerated; the rest is the last part
                    ranges.append((nxt, end, 0))
            child_digest = part.subtype == "digest"
            for s, e, sl in ranges:
                if count >= MAX_PARTS:
                    # limit reached: the last created child absorbs the remaining octets
                    if part.children:
                        last = part.children[-1]
                        last.body_end = ranges[-1][1]
                        for j, item in enumerate(work):
                            if item[0] is last:
                                work[j] = (last, ranges[-1][1], item[2], item[3], 0, item[5])
                    break
                child = MessagePart(header_start=s, depth=part.depth + 1)
                child.header_end = child.body_start = child.body_end = e
                part.children.append(child)
                count += 1
                work.append((child, e, False, child_digest, sl, [child]))
            # process children in document order (stack is LIFO)
            nkids = len(part.children)
            if nkids > 1:
                tail = work[-nkids:]
                work[-nkids:] = tail[::-1]
        elif part.type == "message" and part.subtype in ("rfc822", "global"):
            if part.depth >= MAX_DEPTH or count >= MAX_PARTS:
                _make_opaque(part)
                continue
            child = MessagePart(header_start=part.body_start, depth=part.depth + 1)
            child.header_end = child.body_start = child.body_end = end
            part.children.append(child)
            count += 1
            work.append((child, end, True, False, slack, [*coend, child]))
    return root
