"""PREVIEW (RFC 8970): a short plain-text preview of a message, for FETCH PREVIEW.

RFC 8970 §3: the preview is plain text in UTF-8, at most :data:`PREVIEW_CHARS` characters
(§3.1: "no more than 256 octets" is not required by us, 200 characters is what the issue and
Dovecot give), generated from the message's first text part; an empty string when the message
has no text to show (§3.1: NIL only for a LAZY fetch that cannot answer yet — we always can).

How it is built:

* :func:`preview_part` picks the part: the first ``text/plain`` or ``text/html`` leaf, in MIME
  order, that is not an attachment (``Content-Disposition: attachment``); in a
  ``multipart/alternative`` the plain alternative wins over the HTML one. Nested messages
  (``message/rfc822``) are not entered: their text is not this message's.
* :func:`preview_of_part` decodes at most :data:`PREVIEW_WINDOW` octets of its body (transfer
  encoding, then charset), strips HTML (tags dropped, ``<script>``/``<style>``/``<head>``
  contents dropped, entities decoded — :class:`html.parser.HTMLParser`, never rendered) or, in
  plain text, drops quoted lines (``>``, RFC 3676 §4.5), then collapses white space (any run, including line ends, becomes one space) and cuts to
  :data:`PREVIEW_CHARS` characters.

Invariants: never raises on any message; work per message is bounded by
:data:`PREVIEW_WINDOW` octets whatever the message size (the caller reads only that range of a
big message); the result never contains CR, LF or other control characters.
"""

from __future__ import annotations

import html.parser
import re

from mailhouse.message.headers import decode_bytes
from mailhouse.message.parse import MessagePart
from mailhouse.message.sections import TransferDecoder, UnknownCTE

__all__ = ["PREVIEW_CHARS", "PREVIEW_WINDOW", "preview", "preview_of_part", "preview_part"]

PREVIEW_CHARS = 200  # RFC 8970 §3.1 (and Dovecot): a preview of up to 200 characters
# Octets of the chosen part decoded: enough for 200 characters after HTML markup is stripped
# from typical mail, and the bound on the work per message.
PREVIEW_WINDOW = 64 * 1024
# Parts looked at before giving up (a message of thousands of attachments).
MAX_PARTS = 256

_WS = re.compile(r"[\s\x00-\x1f\x7f]+")
_QUOTED = re.compile(r"^>[^\n]*(?:\n|$)", re.M)  # a quoted line of plain text (RFC 3676 §4.5)
_SKIP_TAGS = frozenset(("script", "style", "head", "title", "template"))
_BREAK_TAGS = frozenset(("br", "p", "div", "tr", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6"))


def _is_text(p: MessagePart) -> bool:
    return (
        not p.children
        and p.type == "text"
        and p.subtype in ("plain", "html")
        and (p.disposition or "").lower() != "attachment"
    )


def preview_part(tree: MessagePart) -> MessagePart | None:
    """The part the preview is made from (see the module docstring), or None."""
    stack = [tree]
    seen = 0
    while stack and seen < MAX_PARTS:
        p = stack.pop()
        seen += 1
        if _is_text(p):
            return p
        if p.type != "multipart" or not p.children:
            continue  # a leaf that is no text, or message/rfc822 (not entered)
        kids = list(p.children)
        if p.subtype == "alternative":
            plain = [k for k in kids if _is_text(k) and k.subtype == "plain"]
            if plain:
                return plain[0]
        stack.extend(reversed(kids))  # depth first, in MIME order
    return None


class _Text(html.parser.HTMLParser):
    """The text content of an HTML fragment (no rendering, no URLs, no attributes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BREAK_TAGS:
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS and self.skip:
            self.skip -= 1
        elif tag in _BREAK_TAGS:
            self.out.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def _strip_html(text: str, *, final: bool) -> str:
    """The text of ``text``; when it is not the whole part (``final`` false), markup cut by the
    window (``<!-- pad -``) stays unparsed instead of being taken for text."""
    p = _Text()
    try:
        p.feed(text)
        if final:
            p.close()
    except Exception:  # HTMLParser is lenient; never let odd markup fail a FETCH
        pass
    return "".join(p.out)


def _cut_utf8_tail(data: bytes) -> int:
    """Octets at the end of ``data`` that start a UTF-8 sequence the window cut short."""
    for back in range(1, min(4, len(data)) + 1):
        c = data[-back]
        if c < 0x80:
            return 0
        if c >= 0xC0:  # a lead octet: complete if the sequence fits
            need = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
            return back if need > back else 0
    return 0


def preview_of_part(body: bytes, part: MessagePart, *, final: bool) -> str:
    """The preview from the first octets of ``part``'s body (``final``: they are the whole
    body, so a trailing partial quantum is flushed)."""
    try:
        dec = TransferDecoder(part.cte)
        data = dec.feed(body[:PREVIEW_WINDOW])
        if final:
            data += dec.finish()
    except UnknownCTE:
        data = body[:PREVIEW_WINDOW]
    charset = part.params.get("charset")
    if not final and (charset or "utf-8").lower() in ("utf-8", "utf8"):
        data = data[: len(data) - _cut_utf8_tail(data)]  # a character cut by the window
    text = decode_bytes(data, charset)
    if part.subtype == "html":
        text = _strip_html(text, final=final)
    else:  # quoted lines of a reply say nothing new (Dovecot drops them too)
        text = _QUOTED.sub("", text)
    return _WS.sub(" ", text).strip()[:PREVIEW_CHARS].rstrip()


def preview(raw: bytes, tree: MessagePart) -> str:
    """RFC 8970 preview of a whole message held in memory."""
    part = preview_part(tree)
    if part is None:
        return ""
    end = min(part.body_end, part.body_start + PREVIEW_WINDOW)
    return preview_of_part(raw[part.body_start : end], part, final=end == part.body_end)
