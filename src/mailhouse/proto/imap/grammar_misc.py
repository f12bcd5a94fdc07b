"""IMAP grammar: QUOTA, METADATA, NOTIFY and URLAUTH commands.

GETQUOTA, GETQUOTAROOT (via the mailbox grammar) and SETQUOTA (RFC 9208 §4.2, §4.3, §7),
GETMETADATA and SETMETADATA (RFC 5464 §4.2, §4.3), NOTIFY (RFC 5465 §6), GENURLAUTH and
RESETKEY (RFC 4467 §7), URLFETCH (RFC 4467 §7 with the RFC 5524 §4 extended form).

The ``parse_*`` functions follow the conventions of :mod:`~mailhouse.proto.imap.grammar`
(signature, pure syntax, refusals).

No recursion: every parenthesised construct here has a fixed grammar depth.
"""

from __future__ import annotations

import re

from mailhouse.proto.imap.commands import (
    FetchAtt,
    GenUrlAuth,
    GetMetadata,
    GetQuota,
    MailboxFilterKind,
    Notify,
    NotifyEvent,
    NotifyEventGroup,
    ResetKey,
    SetMetadata,
    SetQuota,
    UrlFetch,
    UrlFetchItem,
)
from mailhouse.proto.imap.grammar_fetch import fetch_att
from mailhouse.proto.imap.grammar_mailbox import mailbox_filter
from mailhouse.proto.imap.reader import Reader


def parse_getquota(r: Reader, uid: bool) -> GetQuota:
    r.sp()
    return GetQuota(r.decode_mailbox(r.astring()))  # RFC 9208 §4.2: quota-root-name = astring


def parse_setquota(r: Reader, uid: bool) -> SetQuota:
    r.sp()
    root = r.decode_mailbox(r.astring())
    r.sp()
    r.expect(b"(")  # RFC 9208 §7: "(" [setquota-resource *(SP setquota-resource)] ")"
    limits: list[tuple[str, int]] = []
    while not r.try_take(b")"):
        if limits:
            r.sp()
        name = r.atom().upper()
        r.sp()
        limits.append((name, r.number64()))
    return SetQuota(root, tuple(limits))


def parse_getmetadata(r: Reader, uid: bool) -> GetMetadata:
    r.sp()
    maxsize: int | None = None
    depth: str | None = None
    if r.try_take(b"("):  # RFC 5464 §4.2: getmetadata-options
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            opt = r.atom().upper()
            r.sp()
            if opt == "MAXSIZE":
                maxsize = r.number()
            elif opt == "DEPTH":
                depth = r.atom().upper()
                if depth not in ("0", "1", "INFINITY"):
                    r.error("Bad DEPTH")
            else:
                r.error(f"Unknown GETMETADATA option {opt[:40]}")
        r.sp()
    mbox = r.mailbox()
    r.sp()
    entries: list[str] = []
    if r.try_take(b"("):  # entries = entry / "(" entry *(SP entry) ")"
        entries.append(r.astring_str())
        while not r.try_take(b")"):
            r.sp()
            entries.append(r.astring_str())
    else:
        entries.append(r.astring_str())
    return GetMetadata(mbox, tuple(entries), maxsize, depth)


def parse_setmetadata(r: Reader, uid: bool) -> SetMetadata:
    r.sp()
    mbox = r.mailbox()
    r.sp()
    r.expect(b"(")  # RFC 5464 §4.3: "(" entry-value *(SP entry-value) ")"
    entries: list[tuple[str, bytes | None]] = []
    while not r.try_take(b")"):
        if entries:
            r.sp()
        name = r.astring_str()
        r.sp()
        value: bytes | None
        if r.at_literal():
            value = r.literal(allow_binary=True).data  # value = nstring / literal8
        else:
            value = r.nstring()
        entries.append((name, value))
    if not entries:
        r.error("Empty SETMETADATA")
    return SetMetadata(mbox, tuple(entries))


_NOTIFY_FILTERS = frozenset(MailboxFilterKind) - {MailboxFilterKind.SUBTREE_ONE}
_NOTIFY_EVENTS = {
    e.upper(): e
    for e in (
        "MessageNew MessageExpunge FlagChange AnnotationChange MailboxName SubscriptionChange "
        "MailboxMetadataChange ServerMetadataChange"
    ).split()
}


def parse_notify(r: Reader, uid: bool) -> Notify:
    r.sp()
    word = r.atom().upper()
    if word == "NONE":  # RFC 5465 §6: notify-none = "NONE"
        return Notify(True)
    if word != "SET":
        r.error("Expected SET or NONE")
    r.sp()
    status = r.try_take_ci(b"STATUS")
    if status:
        r.sp()
    groups: list[NotifyEventGroup] = []
    while True:
        r.expect(b"(")  # event-group = "(" filter-mailboxes SP events ")"
        filt = mailbox_filter(r, _NOTIFY_FILTERS)
        r.sp()
        events: list[NotifyEvent] = []
        if not r.try_take_ci(b"NONE"):
            r.expect(b"(")
            while not r.try_take(b")"):
                if events:
                    r.sp()
                name = r.atom()
                canon = _NOTIFY_EVENTS.get(name.upper())
                if canon is None:
                    r.error(f"Unknown NOTIFY event {name[:40]}")
                atts: tuple[FetchAtt, ...] = ()
                if canon == "MessageNew" and r.try_take(b" ("):
                    atts_l = [fetch_att(r)]
                    while not r.try_take(b")"):
                        r.sp()
                        atts_l.append(fetch_att(r))
                    atts = tuple(atts_l)
                events.append(NotifyEvent(canon, atts))
            if not events:  # RFC 5465 §8: events = ( "(" event *(SP event) ")" ) / "NONE"
                r.error("Empty NOTIFY event list")
        r.expect(b")")
        groups.append(NotifyEventGroup(filt, tuple(events)))
        if r.eol():
            break
        r.sp()
    return Notify(False, status, tuple(groups))


# RFC 4467 §7: mechanism = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".")
_URLAUTH_MECH = re.compile(rb"[A-Za-z0-9.-]+")


def parse_genurlauth(r: Reader, uid: bool) -> GenUrlAuth:
    items: list[tuple[bytes, str]] = []
    while not r.eol() or not items:
        r.sp()
        url = r.astring()
        r.sp()
        mech = r.match(_URLAUTH_MECH)
        if mech is None:
            r.error("Expected URLAUTH mechanism")
        items.append((url, mech.decode("ascii").upper()))
    return GenUrlAuth(tuple(items))


def parse_resetkey(r: Reader, uid: bool) -> ResetKey:
    if r.eol():
        return ResetKey(None)
    r.sp()
    mbox = r.mailbox()
    mechs: list[str] = []
    while not r.eol():
        r.sp()
        mech = r.match(_URLAUTH_MECH)
        if mech is None:
            r.error("Expected URLAUTH mechanism")
        mechs.append(mech.decode("ascii").upper())
    return ResetKey(mbox, tuple(mechs))


_URLFETCH_PARAMS = frozenset(("BODYPARTSTRUCTURE", "BINARY", "BODY"))


def _urlfetch_ext(r: Reader) -> UrlFetchItem:
    """RFC 5524 §4: "(" url *(SP ("BODYPARTSTRUCTURE" / "BINARY" / "BODY")) ")"; BINARY and
    BODY exclude each other and no parameter may repeat. ``(`` already taken."""
    url = r.astring()
    seen: set[str] = set()
    while not r.try_take(b")"):
        r.sp()
        name = r.atom().upper()
        if name not in _URLFETCH_PARAMS:
            r.error(f"Unknown URLFETCH parameter {name[:40]}")
        if name in seen or (name in ("BINARY", "BODY") and seen & {"BINARY", "BODY"}):
            r.error(f"Conflicting URLFETCH parameter {name}")
        seen.add(name)
    return UrlFetchItem(
        url,
        binary="BINARY" in seen,
        bodypartstructure="BODYPARTSTRUCTURE" in seen,
        body="BODY" in seen,
        extended=True,
    )


def parse_urlfetch(r: Reader, uid: bool) -> UrlFetch:
    """RFC 4467 §7 ``URLFETCH 1*(SP url)``, RFC 5524 §4 adds the parenthesised form."""
    items: list[UrlFetchItem] = []
    while not r.eol() or not items:
        r.sp()
        if r.try_take(b"("):
            items.append(_urlfetch_ext(r))
        else:
            items.append(UrlFetchItem(r.astring()))
    urls = tuple(i.url for i in items)
    return UrlFetch(urls, tuple(items) if any(i.extended for i in items) else ())
