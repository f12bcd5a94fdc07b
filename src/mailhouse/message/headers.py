"""Header-block utilities on raw bytes, for the MSA, MDA and the MIME parser.

RFCs:
- RFC 5322 §2.1.1 (line length ≤ 998 octets), §2.2 (field = name ":" value, name is printable
  US-ASCII except ":"), §2.2.3 (folding: a continuation line starts with WSP), §3.6 (Date and
  Message-ID origination fields).
- RFC 6409 §8.3, §8.2: a submission server may add Message-ID and Date when missing.
- RFC 2047 (encoded words) for display decoding; RFC 2231 §5 (``charset*lang`` in encoded words).

Invariants:
- Every function here takes and returns ``bytes``; decoding to ``str`` happens only in
  :func:`decode_words` / :func:`decode_header_value`, which are for display and search only.
- Editing functions never re-fold, re-order or re-encode fields they do not touch: the message
  after ``remove_header(raw, b"Bcc")`` is byte-identical except for the removed field lines.
- Both CRLF and bare LF line endings are accepted; inserted lines use the line ending the
  message already uses (CRLF if it has none).

:func:`split_header_block` is the one header tokenizer of the package; ``parse.py`` builds the
MIME tree on top of it.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.utils
import re
import secrets
import time

__all__ = [
    "MAX_LINE_OCTETS",
    "split_header_block",
    "unfold",
    "get_header",
    "get_headers",
    "prepend_header",
    "remove_header",
    "check_header_syntax",
    "ensure_message_id_and_date",
    "decode_words",
    "decode_header_value",
    "decode_bytes",
]

# RFC 5322 §2.1.1: each line MUST be no more than 998 characters, excluding the CRLF.
MAX_LINE_OCTETS = 998

_WSP = b" \t"


def split_header_block(
    raw: bytes, start: int = 0, end: int | None = None
) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, int]], int]:
    """Tokenize the header block of the entity at ``raw[start:end]``.

    Returns ``(fields, spans, header_end)``:

    - ``fields``: ``(name, value)`` in order, duplicates kept; ``name`` without the colon and
      without trailing WSP (RFC 5322 §4.5.3 obs-optional allows WSP before ":"); ``value`` is
      the raw bytes after the colon up to (not including) the field's final line break, folding
      line breaks included.
    - ``spans``: for each field, ``(first_octet, end_octet)`` of its complete lines, final line
      break included — what ``HEADER.FIELDS`` returns.
    - ``header_end``: offset just after the empty line that ends the header (the body starts
      there), or ``end`` when there is no empty line (header-only message).

    Lines without a colon that are not continuations are skipped (they are not fields) but stay
    inside the header block, as in Dovecot.
    """
    if end is None:
        end = len(raw)
    fields: list[tuple[bytes, bytes]] = []
    spans: list[tuple[int, int]] = []
    cur_start = -1  # start of the field being collected
    cur_colon = -1
    cur_end = -1  # end of its last line, line break excluded
    cur_next = -1  # end of its last line, line break included
    i = start
    header_end = end

    def flush() -> None:
        if cur_start >= 0:
            name = raw[cur_start:cur_colon].rstrip(_WSP)
            fields.append((name, raw[cur_colon + 1 : cur_end]))
            spans.append((cur_start, cur_next))

    while i < end:
        nl = raw.find(b"\n", i, end)
        if nl < 0:
            line_end, nxt = end, end
        else:
            nxt = nl + 1
            line_end = nl - 1 if nl > i and raw[nl - 1] == 0x0D else nl
        if line_end == i:  # RFC 5322 §2.1: the empty line separates header from body
            flush()
            cur_start = -1
            header_end = nxt
            break
        first = raw[i]
        if first in (0x20, 0x09) and cur_start >= 0:  # RFC 5322 §2.2.3: continuation line
            cur_end, cur_next = line_end, nxt
        else:
            flush()
            colon = raw.find(b":", i, line_end)
            if colon > i and first not in (0x20, 0x09):
                cur_start, cur_colon, cur_end, cur_next = i, colon, line_end, nxt
            else:
                cur_start = -1
        i = nxt
    else:
        flush()
    return fields, spans, header_end


def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3 unfolding: remove line breaks, strip surrounding WSP. Bytes stay raw."""
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return value.strip(b" \t\r")


def get_headers(raw: bytes, name: bytes | str) -> list[bytes]:
    """All values (unfolded, raw bytes) of the top-level header fields named ``name``."""
    want = (name.encode() if isinstance(name, str) else name).lower()
    fields, _, _ = split_header_block(raw)
    return [unfold(v) for n, v in fields if n.lower() == want]


def get_header(raw: bytes, name: bytes | str) -> bytes | None:
    """The first value of header ``name`` (unfolded, raw), or None."""
    vals = get_headers(raw, name)
    return vals[0] if vals else None


def _eol(raw: bytes) -> bytes:
    nl = raw.find(b"\n")
    if nl > 0 and raw[nl - 1] == 0x0D:
        return b"\r\n"
    if nl >= 0:
        return b"\n"
    return b"\r\n"


def prepend_header(raw: bytes, name: bytes | str, value: bytes | str) -> bytes:
    """Return ``raw`` with ``name: value`` as the new first field (trace fields, RFC 5321 §4.4).

    ``value`` may already contain folding; line breaks in it are normalised to the message's
    line ending. Raises ValueError for a name that is not RFC 5322 ftext.
    """
    n = name.encode() if isinstance(name, str) else name
    v = value.encode() if isinstance(value, str) else value
    if not n or any(c < 33 or c > 126 or c == 0x3A for c in n):
        raise ValueError(f"invalid header field name {n!r}")
    eol = _eol(raw)
    v = v.replace(b"\r\n", b"\n").replace(b"\n", eol)
    return n + b": " + v + eol + raw


def remove_header(raw: bytes, name: bytes | str) -> bytes:
    """Remove every top-level field named ``name`` (all its lines), e.g. Bcc (RFC 6409 §8.1)."""
    want = (name.encode() if isinstance(name, str) else name).lower()
    fields, spans, _ = split_header_block(raw)
    cut = [span for (n, _), span in zip(fields, spans, strict=True) if n.lower() == want]
    if not cut:
        return raw
    out: list[bytes] = []
    pos = 0
    for s, e in cut:
        out.append(raw[pos:s])
        pos = e
    out.append(raw[pos:])
    return b"".join(out)


def check_header_syntax(raw: bytes) -> list[str]:
    """Check the top-level header block; return a list of human-readable problems (empty = ok).

    Checks: every line is ``name: value`` or a continuation (RFC 5322 §2.2, §2.2.3); field names
    are printable US-ASCII without ":" (§2.2); no line longer than 998 octets (§2.1.1); no bare
    CR; the first line is not a continuation; the header block is terminated by an empty line
    unless the message has no body.
    """
    problems: list[str] = []
    i, n, lineno = 0, len(raw), 0
    saw_field = False
    terminated = False
    while i < n:
        lineno += 1
        nl = raw.find(b"\n", i)
        nxt = n if nl < 0 else nl + 1
        line = raw[i : (n if nl < 0 else nl)]
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            terminated = True
            break
        if len(line) > MAX_LINE_OCTETS:
            problems.append(
                f"line {lineno}: {len(line)} octets, longer than {MAX_LINE_OCTETS} (RFC 5322 §2.1.1)"
            )
        if b"\r" in line:
            problems.append(f"line {lineno}: bare CR (RFC 5322 §2.3)")
        if line[0] in (0x20, 0x09):
            if not saw_field:
                problems.append(f"line {lineno}: continuation line before any field (RFC 5322 §2.2.3)")
            elif not line.strip(b" \t"):
                problems.append(f"line {lineno}: whitespace-only continuation line (RFC 5322 §3.2.2)")
        else:
            colon = line.find(b":")
            if colon < 0:
                problems.append(f"line {lineno}: not a header field, no ':' (RFC 5322 §2.2)")
            else:
                fname = line[:colon].rstrip(b" \t")
                if not fname:
                    problems.append(f"line {lineno}: empty field name (RFC 5322 §2.2)")
                elif any(c < 33 or c > 126 for c in fname):
                    problems.append(
                        f"line {lineno}: field name {fname!r} is not printable US-ASCII (RFC 5322 §2.2)"
                    )
                elif fname != line[:colon]:
                    problems.append(f"line {lineno}: whitespace before ':' (obsolete, RFC 5322 §4.5)")
                saw_field = True
        i = nxt
    if not terminated and i >= n and n > 0 and not raw.endswith((b"\n",)):
        problems.append("header block not terminated by a line break")
    return problems


def ensure_message_id_and_date(raw: bytes, hostname: str, *, now: float | None = None) -> bytes:
    """Add ``Message-ID`` and/or ``Date`` when missing (RFC 6409 §8.2, §8.3; RFC 5322 §3.6).

    Existing fields are never changed. New fields are prepended, in the order Date, Message-ID.
    """
    fields, _, _ = split_header_block(raw)
    names = {n.lower() for n, _ in fields}
    out = raw
    if b"message-id" not in names:
        # RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">"; id-left must be unique.
        left = f"{int(time.time() * 1000):x}.{secrets.token_hex(8)}"
        out = prepend_header(out, b"Message-ID", f"<{left}@{hostname}>".encode())
    if b"date" not in names:
        out = prepend_header(
            out,
            b"Date",
            email.utils.formatdate(now if now is not None else time.time(), localtime=True).encode(),
        )
    return out


# ---------------------------------------------------------------------------------------------
# RFC 2047 encoded words (display / search only)

_EW_RE = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_QP_HEX_RE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _codec(charset: str) -> str | None:
    cs = charset.strip().lower()
    if cs in ("unknown-8bit", "x-unknown", "unknown"):
        return None
    try:
        return codecs.lookup(cs).name
    except LookupError:
        return None


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode ``data`` with ``charset`` (RFC 2978 name); unknown/None: UTF-8, else Latin-1.

    Never raises: invalid sequences become U+FFFD under a known charset.
    """
    if charset:
        name = _codec(charset)
        if name is not None:
            if name == "ascii":
                name = "utf-8"  # us-ascii declared but 8-bit present: be generous
            return data.decode(name, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _decode_word(charset: bytes, enc: bytes, text: bytes) -> tuple[str, bytes] | None:
    cs = charset.decode("ascii", "replace").split("*", 1)[0]  # RFC 2231 §5: charset*lang
    if enc in (b"B", b"b"):
        t = text + b"=" * (-len(text) % 4)
        try:
            data = base64.b64decode(t, validate=False)
        except (binascii.Error, ValueError):
            return None
    else:  # RFC 2047 §4.2: "_" is space, "=XX" hex
        data = _QP_HEX_RE.sub(lambda m: bytes([int(m.group(1), 16)]), text.replace(b"_", b" "))
    return cs, data


def decode_words(value: bytes | str) -> str:
    """Decode RFC 2047 encoded words in an (unfolded or folded) header value to ``str``.

    Whitespace between adjacent encoded words is dropped (RFC 2047 §6.2); adjacent words in the
    same charset are joined before decoding so multi-byte characters split across words survive.
    Non-encoded 8-bit text (RFC 6532) is decoded as UTF-8 (falling back to Windows-1252).
    """
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if b"\n" in value:
        value = unfold(value)
    out: list[str] = []
    pending_cs: str | None = None
    pending: bytearray = bytearray()
    pos = 0

    def flush_pending() -> None:
        nonlocal pending_cs
        if pending_cs is not None:
            out.append(decode_bytes(bytes(pending), pending_cs))
            pending.clear()
            pending_cs = None

    for m in _EW_RE.finditer(value):
        between = value[pos : m.start()]
        dec = _decode_word(m.group(1), m.group(2), m.group(3))
        if dec is None:
            continue  # leave malformed word as literal text (picked up in `between` later)
        if between and (pending_cs is None or between.strip(b" \t\r\n")):
            flush_pending()
            out.append(decode_bytes(between))
        cs, data = dec
        if pending_cs is not None and pending_cs.lower() != cs.lower():
            flush_pending()
        pending_cs = cs
        pending.extend(data)
        pos = m.end()
    flush_pending()
    out.append(decode_bytes(value[pos:]))
    return "".join(out)


def decode_header_value(value: bytes) -> str:
    """Unfold and decode a raw header value for display (alias kept for readability)."""
    return decode_words(unfold(value))
