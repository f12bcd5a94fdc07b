"""IMAP grammar: mailbox commands.

SELECT / EXAMINE with CONDSTORE and QRESYNC parameters (RFC 9051 §6.3.2, §6.3.3; RFC 7162
§3.1.8, §3.2.5), CREATE with USE (RFC 9051 §6.3.4; RFC 4466 §2.2; RFC 6154 §3), DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE (RFC 9051 §6.3.5-§6.3.8), LIST with LIST-EXTENDED and LIST-STATUS
(RFC 9051 §6.3.9; RFC 5258 §3; RFC 5819 §2), LSUB (RFC 3501 §6.3.9), STATUS (RFC 9051 §6.3.11),
APPEND with MULTIAPPEND, CATENATE, BINARY and UTF8 (RFC 9051 §6.3.12; RFC 3502; RFC 4469 §5;
RFC 3516 §4.4; RFC 6855 §4), and the mailbox filters that NOTIFY and ESEARCH share (RFC 5465 §6,
RFC 7377 §2).

The ``parse_*`` functions follow the conventions of :mod:`~mailhouse.proto.imap.grammar`
(signature, pure syntax, refusals).

No recursion: every parenthesised construct here has a fixed grammar depth.
"""

from __future__ import annotations

import datetime

from mailhouse.proto.imap.commands import (
    Append,
    AppendMessage,
    CatenateText,
    CatenateURL,
    Create,
    List,
    Lsub,
    MailboxArg,
    MailboxFilter,
    MailboxFilterKind,
    QResyncParams,
    Rename,
    Select,
    Status,
)
from mailhouse.proto.imap.reader import Reader
from mailhouse.proto.imap.sequence import SequenceSet


def parse_select(r: Reader, uid: bool, readonly: bool = False) -> Select:
    r.sp()
    mbox = r.mailbox()
    condstore = False
    qresync: QResyncParams | None = None
    if not r.eol():
        r.sp()
        r.expect(b"(")  # RFC 9051 §9: select-params = SP "(" select-param *(SP select-param) ")"
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            name = r.atom().upper()
            if name == "CONDSTORE":  # RFC 7162 §3.1.8
                condstore = True
            elif name == "QRESYNC":  # RFC 7162 §3.2.5
                r.sp()
                r.expect(b"(")
                uidvalidity = r.nz_number()
                r.sp()
                modseq = r.number64()
                known: SequenceSet | None = None
                match: tuple[SequenceSet, SequenceSet] | None = None
                if r.try_take(b" "):
                    if r.peek() != 0x28:
                        known = r.seqset()
                        if r.try_take(b" "):
                            match = _seq_match(r)
                    else:
                        match = _seq_match(r)
                r.expect(b")")
                qresync = QResyncParams(uidvalidity, modseq, known, match)
            else:
                r.error(f"Unknown SELECT parameter {name[:40]}")
    return Select(mbox, readonly, condstore, qresync)


def _seq_match(r: Reader) -> tuple[SequenceSet, SequenceSet]:
    r.expect(b"(")  # RFC 7162 §3.2.5: seq-match-data = "(" known-sequence-set SP known-uid-set ")"
    seqs = r.seqset()
    r.sp()
    uids = r.seqset()
    r.expect(b")")
    return seqs, uids


def parse_examine(r: Reader, uid: bool) -> Select:
    return parse_select(r, uid, readonly=True)


def parse_create(r: Reader, uid: bool) -> Create:
    r.sp()
    mbox = r.mailbox()
    use: tuple[str, ...] = ()
    if not r.eol():
        r.sp()
        r.expect(b"(")  # RFC 4466 §2.2 create-params; RFC 6154 §3 "USE" SP "(" [use-attr ...] ")"
        first = True
        while not r.try_take(b")"):
            if not first:
                r.sp()
            first = False
            name = r.atom().upper()
            if name != "USE":
                r.error(f"Unknown CREATE parameter {name[:40]}")
            r.sp()
            use = r.flag_list()
    return Create(mbox, use)


def parse_mailbox(r: Reader, uid: bool) -> MailboxArg:
    r.sp()
    return MailboxArg(r.mailbox())


def parse_rename(r: Reader, uid: bool) -> Rename:
    r.sp()
    old = r.mailbox()
    r.sp()
    return Rename(old, r.mailbox())


_LIST_SELECT = frozenset(("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"))
_LIST_RETURN = frozenset(("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS", "STATUS"))
_STATUS_ITEMS = frozenset(
    "MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT MAILBOXID DELETED-STORAGE".split()
)


def _status_items(r: Reader) -> tuple[str, ...]:
    items = r.paren_atoms()
    if not items:
        r.error("Empty status item list")  # RFC 9051 §9: status-att *(SP status-att)
    for it in items:
        if it not in _STATUS_ITEMS:
            r.error(f"Unknown status item {it[:40]}")
    return items


def parse_list(r: Reader, uid: bool) -> List:
    r.sp()
    selection: tuple[str, ...] = ()
    extended = False
    if r.peek() == 0x28:  # RFC 5258 §3: list-select-opts
        extended = True
        selection = r.paren_atoms()
        for s in selection:
            if s not in _LIST_SELECT:
                r.error(f"Unknown LIST selection option {s[:40]}")
        r.sp()
    ref = r.list_mailbox()  # decoded like a pattern (RFC 3501 §5.1.3 only where "&" forms a shift)
    r.sp()
    patterns: list[str] = []
    if r.try_take(b"("):  # RFC 5258 §3: patterns = "(" list-mailbox *(SP list-mailbox) ")"
        extended = True
        patterns.append(r.list_mailbox())
        while not r.try_take(b")"):
            r.sp()
            patterns.append(r.list_mailbox())
    else:
        patterns.append(r.list_mailbox())
    ret: list[str] = []
    status: tuple[str, ...] | None = None
    if not r.eol():
        extended = True
        r.sp()
        if not r.try_take_ci(b"RETURN"):
            r.error("Expected RETURN")
        r.sp()
        r.expect(b"(")
        while not r.try_take(b")"):
            if ret or status is not None:
                r.sp()
            opt = r.atom().upper()
            if opt not in _LIST_RETURN:
                r.error(f"Unknown LIST return option {opt[:40]}")
            if opt == "STATUS":  # RFC 5819 §2: "STATUS" SP "(" status-att *(SP status-att) ")"
                r.sp()
                status = _status_items(r)
            else:
                ret.append(opt)
    return List(ref, tuple(patterns), selection, tuple(ret), status, extended)


def parse_lsub(r: Reader, uid: bool) -> Lsub:
    r.sp()
    ref = r.list_mailbox()  # as LIST: the reference is decoded like the pattern
    r.sp()
    return Lsub(ref, r.list_mailbox())


def parse_status(r: Reader, uid: bool) -> Status:
    r.sp()
    mbox = r.mailbox()
    r.sp()
    return Status(mbox, _status_items(r))


def parse_append(r: Reader, uid: bool) -> Append:
    r.sp()
    mbox = r.mailbox()
    messages: list[AppendMessage] = []
    # RFC 3502 §6.3.11: append = "APPEND" SP mailbox 1*append-message
    while not r.eol() or not messages:
        r.sp()
        flags: tuple[str, ...] = ()
        date: datetime.datetime | None = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            r.sp()
        if r.peek() == 0x22:
            date = r.date_time()
            r.sp()
        if r.at_literal():
            lit = r.literal(allow_binary=True)  # RFC 3516 §4.4: literal8 allowed for APPEND
            messages.append(AppendMessage(flags, date, lit.data, lit.binary))
        elif r.try_take_ci(b"CATENATE"):  # RFC 4469 §5
            r.sp()
            r.expect(b"(")
            parts: list[CatenateURL | CatenateText] = []
            while not r.try_take(b")"):
                if parts:
                    r.sp()
                kind = r.atom().upper()
                r.sp()
                if kind == "URL":
                    parts.append(CatenateURL(r.astring()))
                elif kind == "TEXT":
                    lit = r.literal(allow_binary=True)
                    parts.append(CatenateText(lit.data, lit.binary))
                else:
                    r.error("Expected URL or TEXT")
            if not parts:
                r.error("Empty CATENATE")
            messages.append(AppendMessage(flags, date, catenate=tuple(parts)))
        elif r.try_take_ci(b"UTF8"):  # RFC 6855 §4: "UTF8" SP "(" literal8 ")"
            r.sp()
            r.expect(b"(")
            lit = r.literal(allow_binary=True)
            r.expect(b")")
            messages.append(AppendMessage(flags, date, lit.data, lit.binary, utf8=True))
        else:
            r.error("Expected message literal")
    return Append(mbox, tuple(messages))


def mailbox_filter(r: Reader, allowed: frozenset[MailboxFilterKind]) -> MailboxFilter:
    word = r.atom().upper()
    try:
        kind = MailboxFilterKind(word)
    except ValueError:
        r.error(f"Unknown mailbox filter {word[:40]}")
    if kind not in allowed:
        r.error(f"Mailbox filter {word} not allowed here")
    boxes: list[str] = []
    if kind in (MailboxFilterKind.SUBTREE, MailboxFilterKind.SUBTREE_ONE, MailboxFilterKind.MAILBOXES):
        r.sp()  # RFC 5465 §6: one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
        if r.try_take(b"("):
            boxes.append(r.mailbox())
            while not r.try_take(b")"):
                r.sp()
                boxes.append(r.mailbox())
        else:
            boxes.append(r.mailbox())
    return MailboxFilter(kind, tuple(boxes))
