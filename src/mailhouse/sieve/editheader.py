"""Apply RFC 5293 header edits to message bytes (the helper the delivery side calls).

Rules: ``addheader`` inserts at the top of the header (or after the last field with ``:last``,
§4); ``deleteheader`` removes the occurrences the evaluator selected (§5). Values are folded to
one line (CR/LF removed); non-ASCII values are kept as UTF-8 (RFC 6532). Protected fields
(:data:`PROTECTED`: Received, Auto-Submitted — RFC 5293 §9 and RFC 3834 §5 loop protection) are
never added or removed: the evaluator drops such edits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailhouse.sieve.actions import AddHeader, DeleteHeader

__all__ = ["PROTECTED", "apply_header_edits", "valid_field_name", "split_header"]

PROTECTED = frozenset({"received", "auto-submitted"})
_FIELD = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8 ftext


def valid_field_name(name: str) -> bool:
    return bool(_FIELD.fullmatch(name))


def split_header(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header fields each with its folded continuation lines, the blank line, the body)."""
    eol = b"\r\n" if b"\r\n" in raw[:4096] or not raw else b"\n"
    fields: list[bytes] = []
    i = 0
    while i < len(raw):
        j = raw.find(b"\n", i)
        line = raw[i:] if j < 0 else raw[i : j + 1]
        if line in (b"\r\n", b"\n"):
            return fields, line, raw[i + len(line) :]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        i = len(raw) if j < 0 else j + 1
    return fields, eol, b""


def apply_header_edits(raw: bytes, edits: Iterable[AddHeader | DeleteHeader]) -> bytes:
    fields, blank, body = split_header(raw)
    eol = b"\r\n" if blank.endswith(b"\r\n") else b"\n"
    for e in edits:
        if e.name.lower() in PROTECTED or not valid_field_name(e.name):
            continue
        if isinstance(e, AddHeader):
            value = " ".join(e.value.replace("\r", " ").replace("\n", " ").split())
            line = f"{e.name}: {value}".encode() + eol
            if e.last:
                fields.append(line)
            else:
                fields.insert(0, line)
        else:
            want = e.name.lower().encode()
            seen = 0
            kept: list[bytes] = []
            for f in fields:
                name = f.split(b":", 1)[0].strip().lower()
                if name == want:
                    if seen in e.indexes:
                        seen += 1
                        continue
                    seen += 1
                kept.append(f)
            fields = kept
    return b"".join(fields) + blank + body
