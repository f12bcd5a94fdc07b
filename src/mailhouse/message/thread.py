"""THREAD (RFC 5256 ORDEREDSUBJECT and REFERENCES) and SORT keys (RFC 5256 §3, RFC 5957).

- :func:`base_subject` implements RFC 5256 §2.1 base-subject extraction;
  :func:`base_subject_ex` also says whether a reply/forward marker was removed, which
  REFERENCES step 5 needs.
- :func:`thread_orderedsubject` (RFC 5256 §3 ORDEREDSUBJECT) and :func:`thread_references`
  (RFC 5256 §4 REFERENCES, after JWZ) take :class:`ThreadRecord` items and return a list of
  :class:`ThreadNode` trees (``id`` None for a dummy); :func:`format_threads` writes the
  ``THREAD`` response data, e.g. ``(2)(3 6 (4 23)(44 7 96))``.
- :func:`sort_key` gives the comparison key of one SORT criterion for one message and
  :func:`sort_ids` sorts with a list of criteria (``REVERSE`` applies to the next key); ties
  are broken by sequence/UID order (RFC 5256 §3).

Invariants: all algorithms are iterative or bounded by the thread depth, which the
no-loop rule of REFERENCES step 1 keeps finite; no recursion on attacker-controlled depth.
Dates are compared in UTC; a missing or unparsable sent date uses INTERNALDATE (RFC 5256 §2.2).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailhouse.message.envelope import first_mailbox, parse_addresses
from mailhouse.message.headers import decode_words
from mailhouse.message.parse import MessagePart
from mailhouse.message.search import parse_date

__all__ = [
    "ThreadRecord",
    "ThreadNode",
    "base_subject",
    "collate",
    "base_subject_ex",
    "thread_orderedsubject",
    "thread_references",
    "format_threads",
    "record_from_message",
    "sort_key",
    "sort_ids",
    "SORT_CRITERIA",
]

_WS_RE = re.compile(r"[ \t\r\n]+")
_TRAILER_RE = re.compile(r"(?:\s|\(fwd\))+$", re.I)  # subj-trailer = "(fwd)" / WSP
_BLOB = r"\[[^\[\]]*\]\s*"  # subj-blob = "[" *BLOBCHAR "]" *WSP
_REFWD_RE = re.compile(r"^(?:" + _BLOB + r")*(?:re|fwd?)\s*(?:" + _BLOB + r")?:", re.I)
_BLOB_RE = re.compile(r"^" + _BLOB)


def base_subject_ex(subject: bytes | str | None) -> tuple[str, bool]:
    """RFC 5256 §2.1 base subject and whether it was a reply/forward (§4 step 5)."""
    if subject is None:
        return "", False
    s = decode_words(subject) if isinstance(subject, bytes) else decode_words(subject)
    s = _WS_RE.sub(" ", s)  # (1) tabs/continuations → space, runs → one space
    is_reply = False
    while True:
        # (2) remove subj-trailer
        m = _TRAILER_RE.search(s)
        if m:
            if "(" in m.group(0):
                is_reply = True
            s = s[: m.start()]
        while True:
            changed = False
            # (3) remove subj-leader: (*subj-blob subj-refwd) / WSP
            if s.startswith(" "):
                s = s.lstrip(" ")
                changed = True
            m2 = _REFWD_RE.match(s)
            if m2:
                s = s[m2.end() :]
                is_reply = True
                changed = True
            # (4) subj-blob prefix, if something non-empty remains
            m3 = _BLOB_RE.match(s)
            if m3 and s[m3.end() :].strip():
                s = s[m3.end() :]
                changed = True
            if not changed:
                break
        # (6) "[fwd:" ... "]" wrapper
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            is_reply = True
            continue
        if not m:
            break
    return s.strip(" "), is_reply


@functools.lru_cache(maxsize=4096)
def _titlecase_char(c: str) -> str:
    t = c.title()
    return t if len(t) == 1 else c  # simple mappings only (UnicodeData field 14)


def collate(s: str) -> str:
    """The i;unicode-casemap comparison form (RFC 5051 §2): each character to its titlecase,
    then NFKD. Titlecase, not lower case, decides where punctuation sorts: ``[`` and ``_``
    come after the letters, as in Dovecot; "Élody" sorts with the Es, not after "z"."""
    if s.isascii():
        return s.upper()
    return unicodedata.normalize("NFKD", "".join(_titlecase_char(c) for c in s))


def base_subject(subject: bytes | str | None) -> str:
    """RFC 5256 §2.1 base subject (case preserved; compare with ``.casefold()``)."""
    return base_subject_ex(subject)[0]


@dataclass(slots=True)
class ThreadRecord:
    """What THREAD needs to know about one message. ``id`` is the sequence number or UID."""

    id: int
    subject: bytes | str | None = None
    message_id: bytes | str | None = None
    references: bytes | str | None = None
    in_reply_to: bytes | str | None = None
    date: dt.datetime | None = None  # sent date (Date header, else INTERNALDATE)


@dataclass(slots=True, eq=False)
class ThreadNode:
    id: int | None
    children: list[ThreadNode] = field(default_factory=list)
    date: float = 0.0
    order: int = 0
    subject: str = ""
    is_reply: bool = False
    parent: ThreadNode | None = None

    def as_tuple(self) -> Any:
        """``(id, [children...])`` nested tuples, handy for tests and debugging."""
        return (self.id, [c.as_tuple() for c in self.children])


def _ts(d: dt.datetime | None) -> float:
    if d is None:
        return 0.0
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.timestamp()


def record_from_message(id: int, tree: MessagePart, internaldate: dt.datetime | None = None) -> ThreadRecord:
    """Build a ThreadRecord from a parsed message (sent date falls back to INTERNALDATE)."""
    d = parse_date(tree.get(b"date")) or internaldate
    return ThreadRecord(
        id=id,
        subject=tree.get(b"subject"),
        message_id=tree.get(b"message-id"),
        references=b" ".join(tree.get_all(b"references")) or None,
        in_reply_to=tree.get(b"in-reply-to"),
        date=d,
    )


def _date_order_key(n: ThreadNode) -> tuple[float, int]:
    return (n.date, n.order)


def thread_orderedsubject(records: Iterable[ThreadRecord]) -> list[ThreadNode]:
    """RFC 5256 §3 ORDEREDSUBJECT: group by base subject; first message parents the rest."""
    nodes = []
    for order, r in enumerate(records):
        subj = base_subject(r.subject).casefold()
        nodes.append(ThreadNode(r.id, date=_ts(r.date), order=order, subject=subj))
    nodes.sort(key=lambda n: (n.subject, n.date, n.order))
    threads: list[ThreadNode] = []
    for n in nodes:
        if threads and threads[-1].subject == n.subject:
            threads[-1].children.append(n)
        else:
            threads.append(n)
    threads.sort(key=_date_order_key)  # threads ordered by the date of their first message
    return threads


_MSGID_RE = re.compile(rb"<([^<>]*)>")


def _ids(value: bytes | str | None) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return [re.sub(rb"\s+", b"", m) for m in _MSGID_RE.findall(value) if m.strip()]


def _is_ancestor(a: ThreadNode, b: ThreadNode) -> bool:
    """Is ``a`` an ancestor of ``b`` (or b itself)?"""
    x: ThreadNode | None = b
    while x is not None:
        if x is a:
            return True
        x = x.parent
    return False


def _set_parent(child: ThreadNode, parent: ThreadNode | None) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    if parent is not None:
        parent.children.append(child)


def thread_references(records: Iterable[ThreadRecord]) -> list[ThreadNode]:
    """RFC 5256 §4 REFERENCES threading."""
    table: dict[bytes, ThreadNode] = {}
    msgs: list[ThreadNode] = []
    uniq = 0
    for order, r in enumerate(records):
        mids = _ids(r.message_id)
        mid = mids[0] if mids else None
        node = table.get(mid) if mid is not None else None
        if node is None or node.id is not None:
            # RFC 5256 §4 (1): no or duplicate Message-ID → a unique one
            if node is not None or mid is None:
                uniq += 1
                mid = b"\0unique-%d" % uniq
            node = ThreadNode(None)
            table[mid] = node
        node.id = r.id
        node.date = _ts(r.date)
        node.order = order
        node.subject, node.is_reply = base_subject_ex(r.subject)
        node.subject = node.subject.casefold()
        msgs.append(node)
        refs = _ids(r.references) or _ids(r.in_reply_to)[:1]
        # (1A) link the references chain, parent before child, without making loops
        prev: ThreadNode | None = None
        for ref in refs:
            c = table.get(ref)
            if c is None:
                c = ThreadNode(None)
                table[ref] = c
            if prev is not None and c.parent is None and not _is_ancestor(c, prev):
                _set_parent(c, prev)
            prev = c
        # (1B) the message's parent is the last reference (replacing any earlier link)
        if prev is not None and _is_ancestor(node, prev):
            prev = None  # would create a loop
        if prev is not node:
            _set_parent(node, prev)
    # (2) root set
    roots = [n for n in table.values() if n.parent is None]
    # (4) prune dummies (iterative, bottom-up via an explicit post-order)
    roots = _prune(roots)
    # (5) group by base subject; (6) sort
    roots = _group_by_subject(roots)
    _sort_tree(roots)
    return roots


def _prune(roots: list[ThreadNode]) -> list[ThreadNode]:
    # post-order list of all nodes
    post: list[ThreadNode] = []
    stack: list[tuple[ThreadNode, bool]] = [(r, False) for r in roots]
    while stack:
        n, done = stack.pop()
        if done:
            post.append(n)
            continue
        stack.append((n, True))
        stack.extend((c, False) for c in n.children)
    for n in post:
        if n.id is not None or n.parent is None:
            continue
        # (4A) dummy without children: delete. (4B) dummy with children, not at root: promote.
        parent = n.parent
        idx = parent.children.index(n)
        for c in n.children:
            c.parent = parent
        parent.children[idx : idx + 1] = n.children
        n.children = []
        n.parent = None
    out: list[ThreadNode] = []
    for r in roots:
        if r.id is not None:
            out.append(r)
        elif len(r.children) == 1:  # root dummy with one child: promote the child
            c = r.children[0]
            c.parent = None
            out.append(c)
        elif r.children:
            out.append(r)
    return out


def _first_msg(n: ThreadNode) -> ThreadNode:
    return n.children[0] if n.id is None and n.children else n


def _group_by_subject(roots: list[ThreadNode]) -> list[ThreadNode]:
    # children of dummies must be date-sorted before "first child" is meaningful
    for r in roots:
        if r.id is None:
            r.children.sort(key=_date_order_key)
    subjects: dict[str, ThreadNode] = {}
    for r in roots:  # (5B)
        f = _first_msg(r)
        subj = f.subject
        if not subj:
            continue
        old = subjects.get(subj)
        if (
            old is None
            or (r.id is None and old.id is not None)
            or (_first_msg(old).is_reply and not f.is_reply and old.id is not None)
        ):
            subjects[subj] = r
    out: list[ThreadNode] = []
    merged: set[int] = set()  # roots that became children of another root
    for r in roots:  # (5C)
        if id(r) in merged:
            continue
        f = _first_msg(r)
        subj = f.subject
        t = subjects.get(subj) if subj else None
        if t is None or t is r:
            out.append(r)
            continue
        if r.id is None and t.id is None:  # both dummies: merge children
            for c in r.children:
                c.parent = t
            t.children.extend(r.children)
            r.children = []
        elif t.id is None:  # table entry is a dummy: r becomes its child
            r.parent = t
            t.children.append(r)
        elif r.id is not None and f.is_reply and not _first_msg(t).is_reply:
            r.parent = t
            t.children.append(r)
        else:  # siblings under a new dummy, which takes t's place
            d = ThreadNode(None)
            t.parent = d
            r.parent = d
            d.children = [t, r]
            subjects[subj] = d
            for k, o in enumerate(out):
                if o is t:
                    out[k] = d
                    break
            else:
                merged.add(id(t))
                out.append(d)
        merged.add(id(r))
    return out


def _sort_tree(roots: list[ThreadNode]) -> None:
    post: list[ThreadNode] = []
    stack = list(roots)
    while stack:
        n = stack.pop()
        post.append(n)
        stack.extend(n.children)
    for n in reversed(post):  # deepest siblings first (RFC 5256 §4 step 6)
        n.children.sort(key=_date_order_key)
        if n.id is None and n.children:
            n.date, n.order = n.children[0].date, n.children[0].order
    roots.sort(key=_date_order_key)


def format_threads(threads: Sequence[ThreadNode]) -> bytes:
    """THREAD response data (RFC 5256 §4 thread-list), e.g. ``(1 2)(3 (4)(5))``."""
    out: list[str] = []
    # items: ("node", ThreadNode) or ("s", text)
    stack: list[tuple[str, Any]] = []
    for t in reversed(threads):
        stack += [("s", ")"), ("node", t), ("s", "(")]
    while stack:
        kind, v = stack.pop()
        if kind == "s":
            out.append(v)
            continue
        n: ThreadNode = v
        todo: list[tuple[str, Any]] = []
        if n.id is not None:
            todo.append(("s", str(n.id)))
        if len(n.children) == 1 and n.id is not None:
            todo += [("s", " "), ("node", n.children[0])]
        elif n.children:
            if n.id is not None:
                todo.append(("s", " "))
            for c in n.children:
                todo += [("s", "("), ("node", c), ("s", ")")]
        stack.extend(reversed(todo))
    return "".join(out).encode()


# ---------------------------------------------------------------------------------------------
# SORT (RFC 5256 §3; DISPLAYFROM/DISPLAYTO RFC 5957 §3)

SORT_CRITERIA = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "REVERSE", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


def _addr_mailbox(tree: MessagePart, name: bytes) -> str:
    a = first_mailbox(parse_addresses(tree.get(name)))
    if a is None:
        return ""
    return collate(a[2].decode("utf-8", "replace"))  # RFC 5256 §3: addr-mailbox as in ENVELOPE


def _display(tree: MessagePart, name: bytes) -> str:
    a = first_mailbox(parse_addresses(tree.get(name)))
    if a is None:
        return ""
    if a[0]:
        return collate(decode_words(a[0]))  # RFC 5957 §3: decoded display-name
    host = a[3] if a[3] != b"MISSING_DOMAIN" else b""
    return collate(decode_words(a[2]) + ("@" + host.decode("latin-1") if host else ""))


def sort_key(
    criterion: str,
    raw: bytes,
    tree: MessagePart,
    *,
    internaldate: dt.datetime | None = None,
    size: int | None = None,
) -> Any:
    """Key for one SORT criterion (not REVERSE). Strings are in :func:`collate` form; dates are
    UTC stamps."""
    c = criterion.upper()
    if c == "ARRIVAL":
        return _ts(internaldate)
    if c == "DATE":
        return _ts(parse_date(tree.get(b"date")) or internaldate)
    if c == "SIZE":
        return size if size is not None else len(raw)
    if c == "SUBJECT":
        return collate(base_subject(tree.get(b"subject")))  # RFC 5256 §2.1, RFC 5051
    if c in ("FROM", "TO", "CC"):
        return _addr_mailbox(tree, c.lower().encode())
    if c == "DISPLAYFROM":
        return _display(tree, b"from")
    if c == "DISPLAYTO":
        return _display(tree, b"to")
    raise ValueError(f"unknown SORT criterion {criterion!r}")


class _Rev:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Rev) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.v == other.v


def sort_ids(
    items: Iterable[tuple[int, Any]],
    criteria: Sequence[str],
    key_of: Callable[[Any, str], Any],
) -> list[int]:
    """Sort message ids by ``criteria`` (e.g. ``["REVERSE", "DATE", "SUBJECT"]``).

    ``items`` yields ``(id, msg)``; ``key_of(msg, criterion)`` returns :func:`sort_key` for it
    (the server binds raw/tree/internaldate/size). Ties fall back to ascending id.
    """
    plan: list[tuple[str, bool]] = []
    rev = False
    for c in criteria:
        cu = c.upper()
        if cu not in SORT_CRITERIA:
            raise ValueError(f"unknown SORT criterion {c!r}")
        if cu == "REVERSE":
            rev = not rev
            continue
        plan.append((cu, rev))
        rev = False
    decorated = []
    for mid, msg in items:
        keys = tuple(_Rev(key_of(msg, c)) if r else key_of(msg, c) for c, r in plan)
        decorated.append((keys, mid))
    decorated.sort(key=lambda t: (t[0], t[1]))
    return [mid for _, mid in decorated]
