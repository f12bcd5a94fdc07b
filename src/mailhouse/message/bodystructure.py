"""IMAP BODY and BODYSTRUCTURE (RFC 9051 §7.5.2, §9 ``body`` grammar) from a parsed MIME tree.

Shapes (nested Python values; :func:`mailhouse.message.envelope.imap_encode` writes them):

- non-multipart: ``[type, subtype, params, id, description, encoding, size]`` then
  ``+ [lines]`` for ``text/*``; ``+ [envelope, body, lines]`` for message/rfc822 and
  message/global; then, for BODYSTRUCTURE only, ``+ [md5, disposition, language, location]``.
- multipart: :class:`MultipartBody` ``[child, child, ..., subtype]`` then, for BODYSTRUCTURE
  only, ``+ [params, disposition, language, location]``.
- ``params`` is a flat list ``[name, value, ...]`` or None; ``disposition`` is
  ``[type, params-or-None]`` or None; ``language`` a list of tags or None.

Compatibility choices (Dovecot 2.3, also what RFC 9051 allows):
- type, subtype, parameter names and values and the encoding are echoed as written (case kept);
  defaults are lowercase ``"text" "plain"``, ``"7bit"``;
- ``text/*`` without a charset parameter gets ``"charset" "us-ascii"`` appended (RFC 2045 §5.2);
- RFC 2231 continuations are merged; extended values stay %-encoded under ``name*``;
- ``size`` is the octet count of the encoded body as stored; ``lines`` is its count of LF.
  Octets are counted over the stored bytes: the store should keep messages CRLF-normalised
  (IMAP requires it), in which case this equals Dovecot's "virtual" size.

Invariants: iterative (no recursion limit issues for 100-deep trees); never raises on a tree
produced by :func:`mailhouse.message.parse.parse_message`.
"""

from __future__ import annotations

from typing import Any

from mailhouse.message.envelope import MultipartBody, envelope
from mailhouse.message.parse import MessagePart

__all__ = ["body", "bodystructure", "EMPTY_BODY"]

# What a multipart without any part looks like (Dovecot writes the same).
EMPTY_BODY: list[Any] = [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", 0, 0]


def _flat(params: list[tuple[bytes, bytes]]) -> list[bytes]:
    out: list[bytes] = []
    for k, v in params:
        out += [k, v]
    return out


def _type_params(part: MessagePart) -> list[bytes] | None:
    flat = _flat(part.params_raw)
    if part.type == "text" and not any(k.lower() == b"charset" for k, _ in part.params_raw):
        flat += [b"charset", b"us-ascii"]  # RFC 2045 §5.2 default charset
    return flat or None


def _ext_common(part: MessagePart) -> list[Any]:
    dsp = None
    if part.disposition_raw is not None:
        dsp = [part.disposition_raw, _flat(part.disposition_params_raw) or None]
    return [dsp, list(part.language) if part.language else None, part.location]


def _type_pair(part: MessagePart) -> list[bytes]:
    if part.opaque:
        return [b"application", b"octet-stream"]
    t = part.type_raw if part.type_raw is not None else part.type.encode()
    st = part.subtype_raw if part.subtype_raw is not None else part.subtype.encode()
    return [t, st]


def _build(raw: bytes, root: MessagePart, extended: bool) -> list[Any]:
    # Post-order construction without recursion: results[id(part)] once all children are done.
    results: dict[int, list[Any]] = {}
    stack: list[tuple[MessagePart, bool]] = [(root, False)]
    while stack:
        part, done = stack.pop()
        if not done:
            stack.append((part, True))
            for c in part.children:
                stack.append((c, False))
            continue
        if part.is_multipart:
            kids = [results.pop(id(c)) for c in part.children] or [list(EMPTY_BODY)]
            node: list[Any] = MultipartBody(kids)
            node.append(part.subtype_raw or b"x-unknown")
            if extended:
                node.append(_flat(part.params_raw) or None)
                node += _ext_common(part)
            results[id(part)] = node
            continue
        size = part.body_end - part.body_start
        t, st = _type_pair(part)
        node = [
            t,
            st,
            _type_params(part) if not part.opaque else None,
            part.content_id,
            part.description,
            part.cte_raw or b"7bit",
            size,
        ]
        if part.is_message:
            emb = part.children[0]
            node += [envelope(emb), results.pop(id(emb)), raw.count(b"\n", part.body_start, part.body_end)]
        elif part.type == "text" and not part.opaque:
            node.append(raw.count(b"\n", part.body_start, part.body_end))
        if extended:
            node.append(part.md5)
            node += _ext_common(part)
        results[id(part)] = node
    return results[id(root)]


def bodystructure(raw: bytes, tree: MessagePart) -> list[Any]:
    """BODYSTRUCTURE (extended) of the message ``tree`` parsed from ``raw``."""
    return _build(raw, tree, True)


def body(raw: bytes, tree: MessagePart) -> list[Any]:
    """BODY (non-extensible BODYSTRUCTURE) of the message."""
    return _build(raw, tree, False)
