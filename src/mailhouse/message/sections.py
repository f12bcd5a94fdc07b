"""FETCH BODY[section]<partial> and BINARY[section] (RFC 9051 §6.4.5; RFC 3516 BINARY).

Section grammar handled (RFC 9051 §9 ``section-spec``)::

    ""  |  HEADER  |  TEXT  |  HEADER.FIELDS (f ...)  |  HEADER.FIELDS.NOT (f ...)
    1.2.3  [ "." ( MIME | HEADER | TEXT | HEADER.FIELDS (..) | HEADER.FIELDS.NOT (..) ) ]

Part numbering rules (RFC 9051 §6.4.5):
- the parts of a multipart are numbered from 1; a non-multipart message (or embedded message)
  has one part, number 1, which is its body;
- a number after a message/rfc822 (or message/global) part addresses the parts of the
  embedded message, and HEADER/TEXT/HEADER.FIELDS after it refer to the embedded message;
- MIME is the part's own MIME header (the blank line included);
- HEADER.FIELDS returns the matching field lines in message order followed by CRLF; the match
  is case-insensitive on the field name.
- partial ``<start.len>``: octets start..start+len-1 of the result; start past the end gives
  an empty string.

BINARY (RFC 3516 §4.2-4.3) decodes the part's Content-Transfer-Encoding first: quoted-printable
by RFC 2045 §6.7 (:func:`qp_decode`: trailing white space deleted, ``=`` before the line end is a
soft line break even with white space between), base64 by §6.8; ``<off.len>`` and BINARY.SIZE
are over the DECODED octets, and :class:`TransferDecoder` gives the same octets chunk by chunk.

Invariants: BODY results are exact slices of the stored octets (only HEADER.FIELDS concatenates
whole field lines and appends CRLF). Errors: :class:`SectionNotFound` for a part that does not
exist or a spec that does not apply (the server answers with an empty/NIL body or NO), and
:class:`UnknownCTE` from BINARY for an encoding we cannot decode (``NO [UNKNOWN-CTE]``,
RFC 3516 §4.3 / RFC 9051 §7.1).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from mailhouse.message.parse import MessagePart

__all__ = [
    "SectionSpec",
    "SectionNotFound",
    "UnknownCTE",
    "parse_section_spec",
    "resolve_part",
    "fetch_section",
    "binary_section",
    "binary_size",
    "decode_transfer_encoding",
    "qp_decode",
    "base64_binary_parts",
    "section_range",
    "header_fields",
    "TransferDecoder",
]


class SectionNotFound(LookupError):
    """The section does not exist in this message or does not apply to the addressed part."""


class UnknownCTE(ValueError):
    """BINARY of a part whose Content-Transfer-Encoding we cannot decode (RFC 3516)."""


@dataclass(frozen=True, slots=True)
class SectionSpec:
    part: tuple[int, ...] = ()
    # "", "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"
    text: str = ""
    fields: tuple[bytes, ...] = ()


_SPEC_RE = re.compile(
    r"^\s*((?:\d+)(?:\.\d+)*)?\.?((?:HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?\s*(?:\((.*)\))?\s*$",
    re.I | re.S,
)


def parse_section_spec(spec: str | bytes) -> SectionSpec:
    """Parse the text between ``[`` and ``]``. Raises ValueError on bad syntax."""
    s = spec.decode("ascii", "replace") if isinstance(spec, bytes) else spec
    m = _SPEC_RE.match(s)
    if m is None:
        raise ValueError(f"bad section spec {s!r}")
    nums, text, flist = m.group(1), (m.group(2) or "").upper(), m.group(3)
    part = tuple(int(x) for x in nums.split(".")) if nums else ()
    if any(n == 0 for n in part):
        raise ValueError("section part numbers start at 1")
    if text == "MIME" and not part:
        raise ValueError("MIME needs a part number")
    if nums and not text and s.strip() != nums:
        raise ValueError(f"bad section spec {s!r}")
    if text.startswith("HEADER.FIELDS"):
        if flist is None:
            raise ValueError("HEADER.FIELDS needs a field list")
        fields = tuple(f.strip('"').encode() for f in flist.split() if f.strip('"'))
        if not fields:
            raise ValueError("empty HEADER.FIELDS list")
        return SectionSpec(part, text, fields)
    if flist is not None:
        raise ValueError(f"bad section spec {s!r}")
    return SectionSpec(part, text)


def _message_of(p: MessagePart) -> MessagePart:
    emb = p.embedded
    return emb if emb is not None else p


def resolve_part(tree: MessagePart, path: tuple[int, ...]) -> MessagePart:
    """The part addressed by ``path`` (RFC 9051 §6.4.5 numbering). ``()`` is the message."""
    msg: MessagePart | None = tree  # "message context": the entity whose parts we number
    cur = tree
    for n in path:
        if msg is None:
            if cur.is_message:
                msg = cur.children[0]
            elif cur.is_multipart:
                if n > len(cur.children):
                    raise SectionNotFound(path)
                cur = cur.children[n - 1]
                continue
            elif n == 1:
                continue  # leaf part: "1" is itself (Dovecot is lenient here too)
            else:
                raise SectionNotFound(path)
        if msg.is_multipart:
            if n > len(msg.children):
                raise SectionNotFound(path)
            cur = msg.children[n - 1]
        elif n == 1:
            cur = msg  # part 1 of a non-multipart message is its body
        else:
            raise SectionNotFound(path)
        msg = None
    return cur


def header_fields(
    raw: bytes, m: MessagePart, names: tuple[bytes, ...], negate: bool, *, base: int = 0
) -> bytes:
    """``HEADER.FIELDS`` / ``HEADER.FIELDS.NOT`` of message ``m``; ``raw`` holds the stored
    octets from offset ``base`` on (the header block alone is enough: streaming FETCH)."""
    want = {n.lower() for n in names}
    out = [
        raw[s - base : e - base]
        for (n, _), (s, e) in zip(m.headers, m.header_spans, strict=True)
        if (n.lower() in want) != negate
    ]
    # a last field without a line break (header-only message) still needs one
    if out and not out[-1].endswith(b"\n"):
        out[-1] += b"\r\n"
    out.append(b"\r\n")  # RFC 9051 §6.4.5: the blank line is included
    return b"".join(out)


def section_range(tree: MessagePart, spec: SectionSpec) -> tuple[int, int]:
    """The octets ``[start, end)`` of ``BODY[spec]`` in the stored message: every section but
    HEADER.FIELDS(.NOT) (ValueError) is one contiguous range, so a big one can be streamed
    from the blob without holding the message (issue 12 item 2)."""
    if spec.text.startswith("HEADER.FIELDS"):
        raise ValueError("HEADER.FIELDS is not one range")
    m = header_fields_message(tree, spec) if spec.text not in ("", "MIME") or not spec.part else None
    if m is None:
        p = resolve_part(tree, spec.part)
        if spec.text == "":
            return p.body_start, p.body_end  # RFC 9051 §6.4.5: part N is its body
        return p.header_start, p.header_end  # MIME: the part's own header, blank line included
    if spec.text == "":
        return m.header_start, m.body_end
    if spec.text == "HEADER":
        return m.header_start, m.header_end
    if spec.text == "TEXT":
        return m.body_start, m.body_end
    raise SectionNotFound(spec)


def header_fields_message(tree: MessagePart, spec: SectionSpec) -> MessagePart:
    """The message whose HEADER/TEXT/HEADER.FIELDS ``spec`` addresses (the top level, or the
    message embedded in a message/rfc822 part); SectionNotFound for any other part."""
    if not spec.part:
        return tree
    p = resolve_part(tree, spec.part)
    if not p.is_message:
        raise SectionNotFound(spec)  # HEADER/TEXT only apply to message/rfc822 parts
    return p.children[0]


def _select(raw: bytes, tree: MessagePart, spec: SectionSpec) -> bytes:
    if spec.text == "HEADER.FIELDS":
        return header_fields(raw, header_fields_message(tree, spec), spec.fields, False)
    if spec.text == "HEADER.FIELDS.NOT":
        return header_fields(raw, header_fields_message(tree, spec), spec.fields, True)
    start, end = section_range(tree, spec)
    return raw[start:end]


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    start, length = partial
    return data[start : start + length]


def fetch_section(
    raw: bytes,
    msg_tree: MessagePart,
    section_spec: str | bytes | SectionSpec = "",
    partial: tuple[int, int] | None = None,
    *,
    missing_ok: bool = True,
) -> bytes:
    """Bytes of ``BODY[section_spec]<partial>``.

    A section that does not exist yields ``b""`` (what Dovecot answers) unless ``missing_ok`` is
    False, in which case SectionNotFound is raised. Bad syntax raises ValueError.
    """
    spec = section_spec if isinstance(section_spec, SectionSpec) else parse_section_spec(section_spec)
    try:
        data = _select(raw, msg_tree, spec)
    except SectionNotFound:
        if not missing_ok:
            raise
        return b""
    return _partial(data, partial)


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def decode_transfer_encoding(data: bytes, cte: str) -> bytes:
    """Decode a body per RFC 2045 §6; raises UnknownCTE for encodings other than the five."""
    cte = cte.lower()
    if cte in ("7bit", "8bit", "binary", ""):
        return data
    if cte == "base64":
        clean = _B64_JUNK.sub(b"", data.split(b"=", 1)[0])  # RFC 2045 §6.8: ignore non-alphabet
        clean = clean[: len(clean) - (len(clean) % 4 == 1)]  # a lone trailing sextet is garbage
        try:
            return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
        except binascii.Error:
            return b""
    if cte == "quoted-printable":
        return qp_decode(data)
    raise UnknownCTE(cte)


_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _qp_byte(m: re.Match[bytes]) -> bytes:
    return bytes((int(m.group(1), 16),))


def qp_decode(data: bytes, *, final: bool = True) -> bytes:
    """Quoted-printable octets to the octets they encode (RFC 2045 §6.7), line by line:

    * rule 3: white space at the end of an encoded line is deleted (transport padding);
    * rule 5: a line ending in ``=`` (after that deletion, so ``= `` CRLF too) is a soft line
      break: the ``=`` and the line break go;
    * rule 1: ``=XX`` (hex digits, either case — a robust decoder) is the octet XX; any other
      ``=`` is kept as it is (RFC 2045 §6.7 note (2));
    * hard line breaks stay as stored (CRLF; a bare LF stays LF).

    With ``final=False`` the data must end with a line break (streaming: whole lines only)."""
    out: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        if nl < 0:
            line, eol, pos = data[pos:], b"", n
        else:
            end = nl - 1 if nl > pos and data[nl - 1] == 0x0D else nl
            line, eol, pos = data[pos:end], data[end : nl + 1], nl + 1
        if eol or final:
            line = line.rstrip(b" \t")  # rule 3
        if line.endswith(b"=") and (eol or final):
            line, eol = line[:-1], b""  # rule 5: soft line break
        out.append(_QP_ESCAPE.sub(_qp_byte, line) if b"=" in line else line)
        out.append(eol)
    return b"".join(out)


def _leaves(tree: MessagePart) -> list[MessagePart]:
    out: list[MessagePart] = []
    stack = [tree]
    while stack:
        p = stack.pop()
        if p.children:
            stack.extend(reversed(p.children))
        else:
            out.append(p)
    return out


_B64_LINE = 76  # RFC 2045 §6.8: encoded lines of at most 76 characters


def base64_binary_parts(raw: bytes) -> bytes | None:
    """``raw`` with every leaf part of ``Content-Transfer-Encoding: binary`` re-encoded as
    base64 (its CTE field rewritten), or None when there is none.

    For APPEND of literal8 data (RFC 3516 §4.4): the store keeps messages with CRLF line ends
    (``store.crlf``) and BODY[] must never carry NUL in a plain literal (RFC 9051 §4.3), so
    binary octets are kept only in an encoding both survive; BINARY[part] and BINARY.SIZE still
    give back the octets that were appended. Dovecot converts such parts the same way."""
    from mailhouse.message.parse import parse_message

    tree = parse_message(raw)
    edits: list[tuple[int, int, bytes]] = []
    for p in _leaves(tree):
        if p.cte != "binary" or p.is_multipart or p.is_message:
            continue
        for (name, _), (a, b) in zip(p.headers, p.header_spans, strict=True):
            if name.lower() == b"content-transfer-encoding":
                edits.append((a, b, b"Content-Transfer-Encoding: base64\r\n"))
        body = raw[p.body_start : p.body_end]
        enc = base64.b64encode(body)
        lines = b"\r\n".join(enc[i : i + _B64_LINE] for i in range(0, len(enc), _B64_LINE))
        edits.append((p.body_start, p.body_end, lines))
    if not edits:
        return None
    out: list[bytes] = []
    pos = 0
    for a, b, text in sorted(edits):
        out += (raw[pos:a], text)
        pos = b
    out.append(raw[pos:])
    return b"".join(out)


def binary_section(
    raw: bytes, msg_tree: MessagePart, part: tuple[int, ...] = (), partial: tuple[int, int] | None = None
) -> bytes:
    """``BINARY[part]<partial>`` (RFC 3516 §4.2): the part body with its CTE removed.

    ``part == ()`` is the whole message, unchanged. Multipart and message parts are returned
    as stored (they cannot carry a transfer encoding other than 7bit/8bit/binary).
    """
    if not part:
        return _partial(raw, partial)
    p = resolve_part(msg_tree, part)
    data = raw[p.body_start : p.body_end]
    if not p.is_multipart and not p.is_message:
        data = decode_transfer_encoding(data, p.cte)
    return _partial(data, partial)


def binary_size(raw: bytes, msg_tree: MessagePart, part: tuple[int, ...] = ()) -> int:
    """``BINARY.SIZE[part]`` (RFC 3516 §4.3)."""
    return len(binary_section(raw, msg_tree, part))


class TransferDecoder:
    """:func:`decode_transfer_encoding` fed in chunks: the concatenated output equals decoding
    the whole body at once, while only one chunk (plus a few carried octets) is held — BINARY of
    a big part streams (issue 12 item 2). One bounded exception: a quoted-printable run of only
    blanks and "=" longer than `_QP_MAX_CARRY` (64 KiB; RFC 2045 lines are at most 76) is passed
    on as it stands, since holding it until its line ends would hold it whole. Raises UnknownCTE
    like the one-shot decoder."""

    __slots__ = ("_kind", "_carry", "_done")

    def __init__(self, cte: str) -> None:
        kind = cte.lower()
        if kind in ("7bit", "8bit", "binary", ""):
            kind = "identity"
        elif kind not in ("base64", "quoted-printable"):
            raise UnknownCTE(cte)
        self._kind = kind
        self._carry = b""
        self._done = False  # base64: a "=" was seen, the rest is ignored (RFC 2045 §6.8)

    def feed(self, data: bytes) -> bytes:
        if self._kind == "identity":
            return data
        if self._kind == "base64":
            if self._done:
                return b""
            i = data.find(b"=")
            if i >= 0:
                data = data[:i]
                self._done = True
            clean = self._carry + _B64_JUNK.sub(b"", data)
            n = len(clean) - len(clean) % 4
            self._carry = clean[n:]
            return binascii.a2b_base64(clean[:n]) if n else b""
        buf = self._carry + data  # quoted-printable: decode whole lines, carry the last one
        cut = buf.rfind(b"\n") + 1
        if cut:
            self._carry = buf[cut:]
            return qp_decode(buf[:cut], final=False)
        if len(buf) <= _QP_MAX_CARRY:
            self._carry = buf
            return b""
        # an over-long line is decoded in pieces: never cut an "=XX" escape, and keep trailing
        # white space (and an "=") with the rest of the line, where rule 3 / rule 5 judge it
        cut = len(buf) - 2
        j = buf.rfind(b"=", cut - 2, cut)
        cut = j if j >= 0 else cut
        body = buf[:cut].rstrip(b" \t=")
        cut = len(body) if body else cut  # a line of nothing but blanks: decode it as it is
        self._carry = buf[cut:]
        return qp_decode(buf[:cut], final=False)

    def finish(self) -> bytes:
        rest, self._carry = self._carry, b""
        if self._kind == "base64":
            if len(rest) % 4 == 1:
                rest = rest[:-1]  # a lone trailing sextet is garbage
            return binascii.a2b_base64(rest + b"=" * (-len(rest) % 4)) if rest else b""
        if self._kind == "quoted-printable":
            return qp_decode(rest) if rest else b""
        return rest


_QP_MAX_CARRY = 64 * 1024  # a quoted-printable "line" longer than this is decoded in pieces
