"""Content rules over the bounded scan (`spam.scan`): GTUBE, HTML-only, link text that shows one
domain and goes to another, executable or macro attachments (also behind a right-to-left
override in the name), URL shorteners.

All of them read one `Scan` made once per message in a worker thread (`Context.scan`), so a
huge or malformed message costs at most the scan's bounds and never the event loop.
"""

from __future__ import annotations

import unicodedata

from mailhouse.spam.rules import Context, Hit, clean_reason

__all__ = [
    "EXECUTABLE_EXTENSIONS",
    "GTUBE_SCORE",
    "MACRO_EXTENSIONS",
    "SHORTENERS",
    "ContentRules",
]

#: SpamAssassin's GTUBE rule scores 1000: certain spam, whatever else the message carries.
GTUBE_SCORE = 1000.0
#: Windows executables and scripts (what Gmail and Outlook block outright).
EXECUTABLE_EXTENSIONS = frozenset(
    "exe scr com pif bat cmd cpl msi msp js jse vbs vbe wsf wsh hta ps1 lnk jar reg iso img".split()
)
#: Office documents that may carry macros (the "m" formats of OOXML, plus the old binary ones).
MACRO_EXTENSIONS = frozenset("docm dotm xlsm xltm xlam pptm potm ppam sldm".split())
#: Link shorteners: the link hides where it goes.
SHORTENERS = frozenset(
    "bit.ly tinyurl.com t.co goo.gl ow.ly is.gd buff.ly rebrand.ly cutt.ly shorturl.at tiny.cc rb.gy "
    "t.ly s.id v.gd bl.ink short.io".split()
)

SCORES = {
    "GTUBE": GTUBE_SCORE,
    "HTML_ONLY": 0.7,
    "LINK_TEXT_MISMATCH": 2.5,
    "EXECUTABLE_ATTACHMENT": 5.0,
    "MACRO_ATTACHMENT": 3.0,
    "BIDI_FILENAME": 5.0,
    "URL_SHORTENER": 1.0,
}


def _bidi(name: str) -> bool:
    """Whether NAME holds a bidirectional control (U+202E RIGHT-TO-LEFT OVERRIDE et al.), the trick
    that shows ``invoice\u202efdp.exe`` as ``invoiceexe.pdf`` (CVE-2009-3376 style)."""
    return any(unicodedata.category(c) == "Cf" and unicodedata.bidirectional(c) in _BIDI for c in name)


_BIDI = frozenset(("RLO", "LRO", "RLE", "LRE", "PDF", "RLI", "LRI", "FSI", "PDI"))


def _extension(name: str) -> str:
    visible = "".join(c for c in name if unicodedata.category(c) != "Cf").strip().rstrip(".").lower()
    return visible.rsplit(".", 1)[-1] if "." in visible else ""


class ContentRules:
    """One rule object for every content check: they share the one scan of the message."""

    name = "CONTENT"

    async def check(self, ctx: Context) -> list[Hit]:
        s = await ctx.scan()
        hits: list[Hit] = []
        if s.gtube:
            hits.append(Hit("GTUBE", SCORES["GTUBE"], "the message contains the GTUBE spam test string"))
        if s.has_html and not s.has_text:
            hits.append(Hit("HTML_ONLY", SCORES["HTML_ONLY"], "HTML only, without a plain-text part"))
        if s.link_mismatches:
            shown, target = s.link_mismatches[0]
            hits.append(
                Hit(
                    "LINK_TEXT_MISMATCH",
                    SCORES["LINK_TEXT_MISMATCH"],
                    clean_reason(f"a link shows {shown} but goes to {target}"),
                )
            )
        for name in s.attachments:
            ext = _extension(name)
            if _bidi(name):
                hits.append(
                    Hit(
                        "BIDI_FILENAME",
                        SCORES["BIDI_FILENAME"],
                        clean_reason(
                            f"attachment name {name.encode('unicode_escape').decode()!r} hides its "
                            f"real extension .{ext} behind a right-to-left override"
                        ),
                    )
                )
            if ext in EXECUTABLE_EXTENSIONS:
                hits.append(
                    Hit(
                        "EXECUTABLE_ATTACHMENT",
                        SCORES["EXECUTABLE_ATTACHMENT"],
                        clean_reason(f"executable attachment .{ext}"),
                    )
                )
            elif ext in MACRO_EXTENSIONS:
                hits.append(
                    Hit(
                        "MACRO_ATTACHMENT",
                        SCORES["MACRO_ATTACHMENT"],
                        clean_reason(f"macro-enabled Office attachment .{ext}"),
                    )
                )
        short = [h for h in s.url_hosts if h in SHORTENERS or h.removeprefix("www.") in SHORTENERS]
        if short:
            hits.append(
                Hit(
                    "URL_SHORTENER",
                    SCORES["URL_SHORTENER"],
                    clean_reason(f"link through URL shortener {short[0]}"),
                )
            )
        return _once(hits)


def _once(hits: list[Hit]) -> list[Hit]:
    """Each rule name counts once (three .exe files are one EXECUTABLE_ATTACHMENT)."""
    seen: dict[str, Hit] = {}
    for h in hits:
        seen.setdefault(h.name, h)
    return list(seen.values())
