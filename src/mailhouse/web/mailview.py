"""What the webmail shows of a stored message: list summaries, the readable body, parts.

Built on `message.parse` (exact MIME tree), `message.headers` (RFC 2047 decoding),
`message.sections` (CTE decoding, RFC 9051 part numbers) and `message.thread`
(RFC 5256 REFERENCES threading). Summaries are cached per blob key: blobs never change.

Body choice (RFC 2046 §5.1.4): in `multipart/alternative` the last part we can show
wins (HTML over plain text); the reader may ask for the plain-text alternative. Leaf
parts that are not the shown body (attachments, `message/rfc822`) are listed with
their part number for download.

"Why is this in Junk?" (issue 14 §4, `spam_panel`): the verdict that filed the message, as
`spam/explain.py` stored it under the queue id. The queue id is read from the topmost Received
field only, and only when it is ours (``by <hostname> (Mailhouse) … id <queue id>``): we prepend
it last, so a sender cannot plant one there; and the stored verdict must name this message's
Message-ID, so no other message's verdict is ever shown. When the verdict has expired, the
panel falls back to the rule names of our ``X-Spam-Status`` field.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from mailhouse.message.headers import decode_bytes, decode_words
from mailhouse.message.parse import MessagePart, parse_message
from mailhouse.message.search import parse_date, part_text
from mailhouse.message.sections import UnknownCTE, decode_transfer_encoding
from mailhouse.message.thread import ThreadNode, ThreadRecord, thread_references
from mailhouse.spam import explain
from mailhouse.spam.rules import Hit
from mailhouse.store.api import MessageRecord, Store

SUMMARY_CACHE_SIZE = 20_000  # summaries kept in memory per process (a few hundred bytes each)
MAX_SHOWN_BODY = 2 * 1024 * 1024  # characters of a body rendered inline; the rest is cut


def header_text(tree: MessagePart, name: str) -> str:
    v = tree.get(name)
    return decode_words(v) if v is not None else ""


# Unicode bidirectional controls (UAX #9 §2: embeddings/overrides U+202A-202E, isolates
# U+2066-2069, marks U+200E/200F): U+202E turns "gpj.exe" into "exe.jpg" on screen.
BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def no_bidi(text: str) -> str:
    """TEXT without bidi controls, so a name shows in the order of its characters."""
    return BIDI_CONTROLS.sub("", text)


def addresses(tree: MessagePart, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address field, RFC 2047 decoded, bidi controls removed."""
    values = [no_bidi(decode_words(v)) for v in tree.get_all(name)]
    return [(n, a) for n, a in email.utils.getaddresses(values) if a or n]


def fmt_addr(pair: tuple[str, str]) -> str:
    n, a = pair
    return f"{n} <{a}>" if n and a else (a or n)


@dataclass(slots=True)
class Summary:
    subject: str
    from_: list[tuple[str, str]]
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    date: dt.datetime | None
    message_id: bytes | None
    references: bytes | None
    in_reply_to: bytes | None
    has_attachments: bool

    @property
    def from_display(self) -> str:
        if not self.from_:
            return ""
        n, a = self.from_[0]
        return n or a


@dataclass(slots=True)
class Row:
    """One line of the message list: a message, or a thread represented by its newest message."""

    rec: MessageRecord
    summary: Summary
    count: int = 1
    unread: bool = False
    flagged: bool = False
    date: float = 0.0
    uids: list[int] = field(default_factory=list)


class SummaryCache:
    def __init__(self, size: int = SUMMARY_CACHE_SIZE) -> None:
        self.size = size
        self._d: OrderedDict[str, Summary] = OrderedDict()

    def get(self, key: str) -> Summary | None:
        s = self._d.get(key)
        if s is not None:
            self._d.move_to_end(key)
        return s

    def put(self, key: str, s: Summary) -> None:
        self._d[key] = s
        if len(self._d) > self.size:
            self._d.popitem(last=False)


def summarize(raw: bytes) -> Summary:
    tree = parse_message(raw)
    has_att = any(True for _ in attachments(raw, tree))
    return Summary(
        subject=header_text(tree, "subject"),
        from_=addresses(tree, "from"),
        to=addresses(tree, "to"),
        cc=addresses(tree, "cc"),
        date=parse_date(tree.get(b"date")),
        message_id=tree.get(b"message-id"),
        references=b" ".join(tree.get_all(b"references")) or None,
        in_reply_to=tree.get(b"in-reply-to"),
        has_attachments=has_att,
    )


def msg_time(rec: MessageRecord, s: Summary) -> float:
    return s.date.timestamp() if s.date is not None else rec.internaldate


# ------------------------------------------------------------------ parts
@dataclass(slots=True)
class PartInfo:
    path: str  # RFC 9051 part number, "1.2"
    part: MessagePart
    filename: str
    mime_type: str
    size: int


def _walk(tree: MessagePart) -> list[tuple[str, MessagePart]]:
    out: list[tuple[str, MessagePart]] = []
    stack: list[tuple[tuple[int, ...], MessagePart]] = [((), tree)]
    while stack:
        path, p = stack.pop()
        if p.is_multipart:
            for i, c in reversed(list(enumerate(p.children, 1))):
                stack.append(((*path, i), c))
        else:
            out.append((".".join(map(str, path or (1,))), p))
    return out


def _is_attachment(p: MessagePart) -> bool:
    if p.type == "message" or p.disposition == "attachment":
        return True
    if p.type == "text" and p.subtype in ("plain", "html"):
        return False  # a body part
    if p.type == "image" and p.content_id is not None:
        return False  # an inline image the HTML refers to by cid:
    return True


def safe_filename(name: str | None, fallback: str) -> str:
    """A file name without paths, control characters, bidi controls or shell/HTTP specials."""
    name = no_bidi(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r'[\x00-\x1f\x7f"*:<>?|;]+', "_", name).strip(" .")
    return name[:180] or fallback


def attachments(raw: bytes, tree: MessagePart) -> list[PartInfo]:
    out = []
    for path, p in _walk(tree):
        if _is_attachment(p):
            ext = ".eml" if p.type == "message" else ".bin"
            out.append(
                PartInfo(path, p, safe_filename(p.filename, f"part-{path}{ext}"), p.mime_type, p.body_size)
            )
    return out


def part_bytes(raw: bytes, p: MessagePart) -> bytes:
    data = raw[p.body_start : p.body_end]
    if p.is_message or p.is_multipart:
        return data
    try:
        return decode_transfer_encoding(data, p.cte)
    except UnknownCTE:
        return data


def find_part(tree: MessagePart, path: str) -> MessagePart | None:
    for pth, p in _walk(tree):
        if pth == path:
            return p
    return None


def find_cid(tree: MessagePart, cid: str) -> MessagePart | None:
    want = cid.strip("<>").strip().lower()
    for _, p in _walk(tree):
        if p.content_id is not None and decode_bytes(p.content_id).strip().strip("<>").lower() == want:
            return p
    return None


@dataclass(slots=True)
class Body:
    html: str | None  # raw (unsanitised) HTML of the chosen part
    text: str | None  # plain text alternative


def body_of(raw: bytes, tree: MessagePart) -> Body:
    html: str | None = None
    text: str | None = None
    for _, p in _walk(tree):
        if p.type != "text" or _is_attachment(p) or p.disposition == "attachment":
            continue
        if p.subtype == "html" and html is None:
            html = part_text(raw, p)[:MAX_SHOWN_BODY]
        elif p.subtype == "plain" and text is None:
            text = part_text(raw, p)[:MAX_SHOWN_BODY]
    if html is None and text is None and not tree.is_multipart and tree.type == "text":
        text = part_text(raw, tree)
    return Body(html, text)


# ------------------------------------------------------------------ threads
def thread_rows(items: list[tuple[MessageRecord, Summary]]) -> list[Row]:
    """Conversations (RFC 5256 REFERENCES), newest first; each row is the newest message."""
    by_uid = {r.uid: (r, s) for r, s in items}
    records = [
        ThreadRecord(
            id=r.uid,
            subject=s.subject,
            message_id=s.message_id,
            references=s.references,
            in_reply_to=s.in_reply_to,
            date=dt.datetime.fromtimestamp(msg_time(r, s), dt.UTC),
        )
        for r, s in items
    ]
    rows: list[Row] = []
    for root in thread_references(records):
        uids = _ids(root)
        if not uids:
            continue
        newest = max(uids, key=lambda u: (msg_time(*by_uid[u]), u))
        rec, summ = by_uid[newest]
        rows.append(
            Row(
                rec,
                summ,
                count=len(uids),
                unread=any("\\Seen" not in by_uid[u][0].flags for u in uids),
                flagged=any("\\Flagged" in by_uid[u][0].flags for u in uids),
                date=msg_time(rec, summ),
                uids=sorted(uids),
            )
        )
    rows.sort(key=lambda r: (r.date, r.rec.uid), reverse=True)
    return rows


def flat_rows(items: list[tuple[MessageRecord, Summary]]) -> list[Row]:
    rows = [
        Row(
            r,
            s,
            unread="\\Seen" not in r.flags,
            flagged="\\Flagged" in r.flags,
            date=msg_time(r, s),
            uids=[r.uid],
        )
        for r, s in items
    ]
    rows.sort(key=lambda r: (r.date, r.rec.uid), reverse=True)
    return rows


def _ids(node: ThreadNode) -> list[int]:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if n.id is not None:
            out.append(n.id)
        stack.extend(n.children)
    return out


def thread_of(items: list[tuple[MessageRecord, Summary]], uid: int) -> list[int]:
    for row in thread_rows(items):
        if uid in row.uids:
            return row.uids
    return [uid]


# RFC 5321 §4.4 as smtpserver/server.py writes it: "from H ([ip]) by HOST (Mailhouse) with P id QID"
_OUR_RECEIVED = re.compile(r"\bby\s+(\S+)\s+\(Mailhouse\)\s+with\s+\S+\s+id\s+([A-Za-z0-9]+)")
_STATUS = re.compile(r"score=(-?[0-9.]+)\s+required=(-?[0-9.]+)\s+tests=(\S+)")


@dataclass(frozen=True, slots=True)
class SpamPanel:
    """What "Why is this in Junk?" shows: the stored verdict (HITS with scores and reasons), or only
    the rule names of X-Spam-Status (TESTS) once the verdict has expired, or nothing known."""

    score: float | None
    required: float | None
    hits: tuple[Hit, ...] = ()
    tests: tuple[str, ...] = ()


def our_queue_id(tree: MessagePart, hostname: str) -> str | None:
    """The queue id in the topmost Received field if it is ours (see the module docstring)."""
    top = tree.get("received")
    m = _OUR_RECEIVED.search(top.decode("latin-1")) if top is not None else None
    if m is None or m.group(1).lower().rstrip(".") != hostname.lower().rstrip("."):
        return None
    return m.group(2)


async def spam_panel(store: Store, hostname: str, tree: MessagePart, in_junk: bool) -> SpamPanel | None:
    """The panel for a message in Junk or flagged as spam (X-Spam-Flag: YES); None for others."""
    status = tree.get("x-spam-status")
    if not in_junk and (tree.get("x-spam-flag") or b"").strip().upper() != b"YES":
        return None
    qid = our_queue_id(tree, hostname)
    verdict = await explain.find(store, qid) if qid else None
    mid = decode_bytes(tree.get("message-id") or b"").strip().strip("<>").strip()
    if verdict is not None and verdict.queue_id == qid and verdict.message_id == mid:
        return SpamPanel(verdict.score, verdict.required, verdict.hits)
    m = _STATUS.search(status.decode("latin-1")) if status is not None else None
    if m is None:
        return SpamPanel(None, None)
    tests = tuple(t for t in m.group(3).split(",") if t and t != "none")
    return SpamPanel(float(m.group(1)), float(m.group(2)), tests=tests)
