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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import nh3

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


@dataclass(slots=True)
class SanitizedHtml:
    html: str
    remote_blocked: int  # remote images removed because the reader has not allowed them


def sanitize_html(
    html: str, *, allow_remote: bool = False, cid_url: Callable[[str], str] | None = None
) -> SanitizedHtml:
    blocked = 0

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
    return SanitizedHtml(out, blocked)


def html_to_text(html: str) -> str:
    """Rough plain text of an HTML body (for quoting in replies and for search)."""
    html = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</h\d>|</li>", "\n", html)
    text = nh3.clean(html, tags=set(), clean_content_tags=CLEAN_CONTENT | {"head"})
    import html as html_mod

    text = html_mod.unescape(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def cid_path(base: str) -> Callable[[str], str]:
    def make(cid: str) -> str:
        return f"{base}/cid/{quote(cid.strip('<>'), safe='')}"

    return make
