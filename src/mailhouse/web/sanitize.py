"""HTML mail made safe to show inside the webmail page (nh3, the Rust ammonia sanitiser).

What survives: a fixed allow-list of text-formatting tags (nh3's default minus `map` and
`area`, plus `font`), a few presentational attributes, and inline `style` limited to
`SAFE_CSS` properties. What never survives:
- `script`, `style`, `iframe`, `object`, `embed`, `form`, inputs, `meta` (refresh),
  `base`, `link`, `svg`/`math` (so no SVG `<script>` or `<animate>`): not on the list;
- event handlers (`on*`), `id`/`class` (no clashes with the webmail's own DOM and CSS);
- URLs other than http(s)/mailto (links) and cid:/data:image (images): no `javascript:`;
- CSS values containing `url(`, `image-set(`, `expression(`, `@import` or escapes:
  no fetches and no tricks from CSS.
Remote images (http/https `src`) are dropped unless the reader allowed them for that
message, and `cid:` images are pointed at the message's own parts. The page's CSP
(`web.security.CSP`) is the second line of defence if anything slipped through.

Cost bounds (issue 12: one e-mail must not freeze the server). nh3/html5ever's time grows with
the square of the nesting depth (60,000 nested `<div>`, 300 KB: ~9 s), and the node has ONE
event loop. So:
- `cap_depth` is a linear pre-pass over the tags that drops every tag nested deeper than
  `MAX_DEPTH` (their text stays); the capped mail sanitises in milliseconds. Dropping whole
  tags can never add markup, and its output still goes through nh3, so it cannot weaken the
  sanitiser; it only changes how absurdly deep layouts look.
- input beyond `MAX_HTML_INPUT` characters is cut before parsing (nh3 closes what is open);
  output beyond `MAX_HTML_OUTPUT` is not shown as HTML.
- the webmail calls `sanitize_html_async` / `html_to_text_async`, which run the whole job
  (`cap_depth` and the regex passes are pure Python that holds the GIL; nh3 releases it) in a
  bounded per-process `runtime.cpupool.CpuPool` of worker processes, killed past the time
  budget (`OFFLOAD_BUDGET`, queueing included); on
  timeout, overflow or oversize the page shows the plain-text part (or a linear tag strip of
  the HTML) with a notice (`SanitizedHtml.fallback`) instead of hanging.
"""

from __future__ import annotations

import asyncio
import functools
import html as html_mod
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import nh3

from mailhouse.runtime.cpupool import CpuPool, RemoteError
from mailhouse.runtime.offload import Offload, OffloadError

MAX_DEPTH = 100  # tags nested deeper than this are dropped before nh3 (see the docstring)
MAX_HTML_INPUT = 2_000_000  # characters of HTML parsed at most; the rest is cut
MAX_HTML_OUTPUT = 4_000_000  # sanitised HTML longer than this is shown as plain text
OFFLOAD_WORKERS = 2  # sanitiser threads per node
OFFLOAD_QUEUE = 8  # sanitiser jobs waiting at most; beyond that the page falls back at once
OFFLOAD_BUDGET = 2.0  # seconds a page waits for the sanitiser before it falls back

TAGS = (set(nh3.ALLOWED_TAGS) - {"map", "area"}) | {"font", "center"}
_PRESENTATION = {"align", "valign", "width", "height", "bgcolor", "border", "cellpadding", "cellspacing"}
ATTRIBUTES: dict[str, set[str]] = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
ATTRIBUTES.setdefault("*", set()).update({"style", "title", "dir", "lang"})
for _t in ("table", "td", "th", "tr", "tbody", "thead", "div", "p", "img"):
    ATTRIBUTES.setdefault(_t, set()).update(_PRESENTATION)
ATTRIBUTES["font"] = {"color", "face", "size"}
ATTRIBUTES.pop("area", None)

SAFE_CSS = {
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "text-align",
    "text-decoration",
    "text-transform",
    "line-height",
    "letter-spacing",
    "white-space",
    "vertical-align",
    "width",
    "max-width",
    "min-width",
    "height",
    "max-height",
    "margin",
    "margin-top",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "border",
    "border-top",
    "border-bottom",
    "border-left",
    "border-right",
    "border-color",
    "border-width",
    "border-style",
    "border-collapse",
    "border-spacing",
    "border-radius",
    "display",
    "list-style-type",
    "direction",
    "word-break",
    "overflow-wrap",
}
_CSS_DANGER = re.compile(
    r"url\s*\(|image-set|expression\s*\(|@import|\\|javascript:|behavior|-moz-binding", re.I
)
_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpe?g|webp);base64,", re.I)
CLEAN_CONTENT = {"script", "style", "title", "template", "xmp", "noembed", "noframes", "textarea", "select"}
URL_SCHEMES = {"http", "https", "mailto", "cid", "data"}


# HTML void elements (no end tag; WHATWG HTML §13.1.2) and the raw-text ones whose content is not
# markup: neither may change the depth count.
_VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr basefont bgsound frame keygen".split()
)
# `[^<>]*`, not a quote-aware attribute grammar: every match attempt stops at the next `<`, so
# the scan stays linear even on a mail of `<a ` without any `>` (a miscounted tag only moves
# where the cap cuts; nh3 still sanitises the result).
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)([^<>]*)>")


@dataclass(slots=True)
class SanitizedHtml:
    html: str
    remote_blocked: int  # remote images removed because the reader has not allowed them
    fallback: str | None = None  # set: html is empty, show the plain text with this notice


def cap_depth(html: str, max_depth: int = MAX_DEPTH) -> str:
    """HTML with every tag nested deeper than MAX_DEPTH removed (text kept); one linear pass."""
    out: list[str] = []
    depth = 0
    pos = 0
    changed = False
    for m in _TAG.finditer(html):
        closing, name, rest = m.group(1), m.group(2).lower(), m.group(3)
        if name in _VOID or (not closing and rest.rstrip().endswith("/")):
            continue  # no depth change; kept
        if closing:
            drop = depth > max_depth
            depth = max(depth - 1, 0)
        else:
            depth += 1
            drop = depth > max_depth
        if drop:
            out.append(html[pos : m.start()])
            pos = m.end()
            changed = True
    if not changed:
        return html
    out.append(html[pos:])
    return "".join(out)


def sanitize_html(
    html: str, *, allow_remote: bool = False, cid_url: Callable[[str], str] | None = None
) -> SanitizedHtml:
    blocked = 0
    html = cap_depth(html[:MAX_HTML_INPUT])

    def attr_filter(tag: str, attr: str, value: str) -> str | None:
        nonlocal blocked
        v = value.strip()
        low = v.lower()
        if attr == "style":
            return None if _CSS_DANGER.search(v) else value
        if tag == "img" and attr == "src":
            if low.startswith("cid:"):
                return cid_url(v[4:]) if cid_url else None
            if low.startswith("data:"):
                return v if _DATA_IMAGE.match(v) else None
            if low.startswith(("http:", "https:", "//")):
                if allow_remote and not low.startswith("//"):
                    return v
                blocked += 1
                return None
            return None  # relative URLs would hit the webmail itself
        if attr in ("href", "cite"):
            if low.startswith(("http:", "https:", "mailto:")):
                return v
            return None  # javascript:, data:, cid:, relative…
        return value

    out = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=CLEAN_CONTENT,
        attributes=ATTRIBUTES,
        attribute_filter=attr_filter,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=SAFE_CSS,
        strip_comments=True,
    )
    if len(out) > MAX_HTML_OUTPUT:
        return SanitizedHtml(
            "", blocked, "This message's HTML is too large to show; showing it as plain text."
        )
    return SanitizedHtml(out, blocked)


_BREAKS = re.compile(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</h\d>|</li>")


def html_to_text(html: str) -> str:
    """Rough plain text of an HTML body (for quoting in replies and for search)."""
    html = _BREAKS.sub("\n", cap_depth(html[:MAX_HTML_INPUT]))
    text = nh3.clean(html, tags=set(), clean_content_tags=CLEAN_CONTENT | {"head"})
    text = html_mod.unescape(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_ANY_TAG = re.compile(r"<[^<>]*>")  # stops at the next `<`: linear, see `_TAG`
_RAW_TEXT = re.compile(r"(?i)<(script|style|title|template)\b[^<>]*>")
_BLANK_RUN = re.compile(r"\n{3,}")
#: Characters of HTML one step of `quick_text` works on. Each step is a few regex passes in C that
#: hold the GIL (~0.1-0.5 ms for this much); between steps the interpreter may hand the GIL over,
#: so `quick_text_async` (a thread) keeps the event loop's waits that short (issue 12 item 1: the
#: whole 2 MB input in one pass held the loop for ~0.5 s).
QUICK_WINDOW = 16_384


def _windows(html: str, size: int | None = None) -> Iterator[str]:
    """HTML in pieces of about SIZE characters, each cut just before a `<`: no tag, end tag or
    entity is ever split (none contains a `<` after its first character), so every regex of
    `quick_text` finds in the pieces exactly what it finds in the whole."""
    size = size or QUICK_WINDOW
    start, n = 0, len(html)
    while n - start > size:
        cut = html.rfind("<", start + 1, start + size + 1)
        if cut < 0:  # a long run without a tag: up to the next one
            cut = html.find("<", start + size)
            if cut < 0:
                break
        yield html[start:cut]
        start = cut
    if start < n:
        yield html[start:]


def _drop_raw_text(html: str, raw: str | None = None) -> tuple[str, str | None]:
    """HTML without the content of script/style/title/template elements; linear (str.find).

    RAW: the element whose content the previous piece ended in (its end tag not seen yet);
    returned likewise for the next piece."""
    low = html.lower()
    out: list[str] = []
    pos = 0
    if raw is not None:
        end = low.find("</" + raw)
        if end < 0:
            return "", raw
        pos = end
    while (m := _RAW_TEXT.search(html, pos)) is not None:
        out.append(html[pos : m.start()])
        name = m.group(1).lower()
        end = low.find("</" + name, m.end())
        if end < 0:
            return "".join(out), name
        pos = end
    out.append(html[pos:])
    return "".join(out), None


def quick_text(html: str) -> str:
    """Plain text of HTML by a linear regex strip: the fallback when nh3 is late or busy.

    Cruder than `html_to_text` but cheap on any input; the result is text (the template escapes it).
    Works in `QUICK_WINDOW` pieces (see there); runs of blank lines are folded across pieces."""
    out: list[str] = []
    raw: str | None = None
    trailing = 0  # newlines at the end of what is in OUT (the fold spans pieces)
    for piece in _windows(html[:MAX_HTML_INPUT]):
        piece, raw = _drop_raw_text(_BREAKS.sub("\n", piece), raw)
        text = _BLANK_RUN.sub("\n\n", html_mod.unescape(_ANY_TAG.sub("", piece)))
        if not text:
            continue
        lead = len(text) - len(text.lstrip("\n"))
        if lead == len(text):
            text = text[: max(0, 2 - trailing)]
            trailing += len(text)
        else:
            if trailing + lead > 2:
                text = text[lead - max(0, 2 - trailing) :]
            trailing = len(text) - len(text.rstrip("\n"))
        out.append(text)
    return "".join(out).strip()


async def quick_text_async(html: str) -> str:
    """`quick_text` in a thread: the event loop waits for at most one `QUICK_WINDOW` step at a time."""
    return await asyncio.to_thread(quick_text, html)


_pool: CpuPool | Offload | None = None


def pool() -> CpuPool | Offload:
    """The per-process (so per-node) sanitiser pool, made on first use; its worker processes start
    with the first job (after any fork). ``cap_depth`` and the regex passes are pure Python that
    holds the GIL (~0.4 s for the 60,000-``<div>`` mail), so they run in processes, not threads."""
    global _pool
    if _pool is None or isinstance(_pool, CpuPool) and _pool.closed:  # closed: a node stopped
        _pool = CpuPool(workers=OFFLOAD_WORKERS, queue=OFFLOAD_QUEUE, budget=OFFLOAD_BUDGET, name="sanitize")
    return _pool


def _sanitize_job(html: str, allow_remote: bool, cid_url: Callable[[str], str] | None) -> SanitizedHtml:
    """`sanitize_html` with positional arguments (a pool job: module-level, picklable)."""
    return sanitize_html(html, allow_remote=allow_remote, cid_url=cid_url)


FALLBACK_NOTICE = "This message's HTML took too long to render safely; showing it as plain text."


async def sanitize_html_async(
    html: str, *, allow_remote: bool = False, cid_url: Callable[[str], str] | None = None
) -> SanitizedHtml:
    """`sanitize_html` off the event loop; on timeout or a full pool, a `fallback` result."""

    try:
        return await asyncio.wait_for(pool().run(_sanitize_job, html, allow_remote, cid_url), OFFLOAD_BUDGET)
    except (OffloadError, RemoteError, TimeoutError):
        return SanitizedHtml("", 0, FALLBACK_NOTICE)


async def html_to_text_async(html: str) -> str:
    """`html_to_text` off the event loop; on timeout or a full pool, `quick_text`."""
    try:
        return await asyncio.wait_for(pool().run(html_to_text, html), OFFLOAD_BUDGET)
    except (OffloadError, RemoteError, TimeoutError):
        return await quick_text_async(html)


def cid_path(base: str) -> Callable[[str], str]:
    """The URL of a ``cid:`` part under BASE (a partial: picklable, for the sanitiser's processes)."""
    return functools.partial(_cid_url, base)


def _cid_url(base: str, cid: str) -> str:
    return f"{base}/cid/{quote(cid.strip('<>'), safe='')}"
