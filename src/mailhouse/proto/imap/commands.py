"""Typed IMAP command arguments: one frozen dataclass per command (or command family).

RFCs: RFC 9051 §6 (IMAP4rev2 commands), RFC 3501 §6 (IMAP4rev1: LSUB, CHECK, RECENT, RFC822.*),
and the extensions named on each class. The grammar (``grammar*.py``) produces these; the
adapter dispatches on ``Command.name`` and reads the fields.

Invariants:

* Only syntax lives here: no mailbox state, no policy. A field holds what the client sent,
  normalised only where the RFC says the forms are equal (``INBOX`` is case-insensitive,
  RFC 9051 §5.1; command, flag-keyword-free atoms such as status items are upper-cased).
* Mailbox names are ``str``: decoded from modified UTF-7 (RFC 3501 §5.1.3) or, with
  UTF8=ACCEPT (RFC 6855 §3), from UTF-8. Other client strings (passwords, search text,
  metadata values, URLs) stay ``bytes`` (DESIGN.md convention 3).
* System flags keep their backslash and are title-cased (``\\Seen``); keywords keep the
  client's spelling (RFC 9051 §2.3.2 keywords are case-insensitive for matching only).
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from mailhouse.proto.imap.search import SearchKey
from mailhouse.proto.imap.sequence import SequenceSet

# ---------------------------------------------------------------- argument-less commands


@dataclass(frozen=True, slots=True)
class NoArgs:
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, IDLE (RFC 9051 §6.3.13), CHECK (RFC 3501 §6.4.1),
    CLOSE, UNSELECT (RFC 9051 §6.4.2), NAMESPACE (RFC 9051 §6.3.10), UNAUTHENTICATE (RFC 8437)
    and plain EXPUNGE."""


# ---------------------------------------------------------------- not authenticated


@dataclass(frozen=True, slots=True)
class Authenticate:
    """RFC 9051 §6.2.2; ``initial_response`` is SASL-IR (RFC 4959 §3): the raw base64 bytes,
    ``b"="`` meaning an empty response, ``None`` when absent."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class Login:
    """RFC 9051 §6.2.3."""

    userid: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class Enable:
    """RFC 9051 §6.3.1 / RFC 5161; capability names upper-cased."""

    capabilities: tuple[str, ...]


# ---------------------------------------------------------------- authenticated


@dataclass(frozen=True, slots=True)
class QResyncParams:
    """RFC 7162 §3.2.5: ``QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])``."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT and EXAMINE (``readonly``), RFC 9051 §6.3.2-3; CONDSTORE/QRESYNC RFC 7162 §3.1.8, §3.2.5."""

    mailbox: str
    readonly: bool = False
    condstore: bool = False
    qresync: QResyncParams | None = None


@dataclass(frozen=True, slots=True)
class Create:
    """RFC 9051 §6.3.4; ``special_use`` from ``(USE (\\Drafts ...))``, RFC 6154 §3."""

    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MailboxArg:
    """DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT (one mailbox argument)."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    """RFC 9051 §6.3.6."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST, RFC 9051 §6.3.9 with LIST-EXTENDED (RFC 5258 §3), SPECIAL-USE (RFC 6154 §5.1),
    LIST-STATUS (RFC 5819 §2). ``return_status`` is the status item list of
    ``RETURN (STATUS (...))`` or None; ``return_options`` holds the other return options.
    ``extended`` is True when selection options, several patterns or RETURN were used."""

    reference: str
    patterns: tuple[str, ...]
    selection_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    return_status: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    """RFC 3501 §6.3.9 (IMAP4rev1 only)."""

    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Status:
    """RFC 9051 §6.3.11; items upper-cased (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE
    RECENT HIGHESTMODSEQ APPENDLIMIT MAILBOXID DELETED-STORAGE)."""

    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CatenateURL:
    """RFC 4469 §5: ``URL astring``."""

    url: bytes


@dataclass(frozen=True, slots=True)
class CatenateText:
    """RFC 4469 §5: ``TEXT literal`` (``binary`` when literal8, RFC 3516)."""

    data: bytes
    binary: bool = False


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (RFC 9051 §6.3.12) / MULTIAPPEND (RFC 3502 §6.3.11).

    Exactly one of ``data`` (the literal, ``binary`` when literal8 ``~{n}``, RFC 3516 §4.4)
    and ``catenate`` (RFC 4469) is set. ``utf8`` marks RFC 6855 §4 ``UTF8 (~{n})`` data."""

    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None
    data: bytes | None = None
    binary: bool = False
    utf8: bool = False
    catenate: tuple[CatenateURL | CatenateText, ...] | None = None


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND; several ``messages`` with MULTIAPPEND (RFC 3502)."""

    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class GetQuota:
    """RFC 9208 §4.2 (QUOTA)."""

    root: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    """RFC 9208 §4.1.3: resource names upper-cased with their limit."""

    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Id:
    """RFC 2971 §3.1: ``None`` for NIL, else (field, value-or-None) pairs."""

    params: tuple[tuple[bytes, bytes | None], ...] | None


@dataclass(frozen=True, slots=True)
class Compress:
    """RFC 4978 §3: mechanism upper-cased (DEFLATE)."""

    mechanism: str


@dataclass(frozen=True, slots=True)
class GetMetadata:
    """RFC 5464 §4.2; ``mailbox`` is ``""`` for server metadata; ``depth`` is ``"0"``, ``"1"``
    or ``"INFINITY"``."""

    mailbox: str
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: str | None = None


@dataclass(frozen=True, slots=True)
class SetMetadata:
    """RFC 5464 §4.3; a ``None`` value removes the entry."""

    mailbox: str
    entries: tuple[tuple[str, bytes | None], ...]


class MailboxFilterKind(enum.Enum):
    """RFC 5465 §6 filter-mailboxes and RFC 7377 §2 source-mbox."""

    SELECTED = "SELECTED"
    SELECTED_DELAYED = "SELECTED-DELAYED"
    INBOXES = "INBOXES"
    PERSONAL = "PERSONAL"
    SUBSCRIBED = "SUBSCRIBED"
    SUBTREE = "SUBTREE"
    SUBTREE_ONE = "SUBTREE-ONE"
    MAILBOXES = "MAILBOXES"


@dataclass(frozen=True, slots=True)
class MailboxFilter:
    """A filter; ``mailboxes`` is set for SUBTREE, SUBTREE-ONE and MAILBOXES."""

    kind: MailboxFilterKind
    mailboxes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One FETCH item (RFC 9051 §6.4.5).

    ``name`` is upper-case: ENVELOPE FLAGS INTERNALDATE RFC822.SIZE RFC822 RFC822.HEADER
    RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ BINARY.SIZE EMAILID THREADID SAVEDATE PREVIEW,
    or BODY / BODY.PEEK / BINARY / BINARY.PEEK with a ``section``. ``partial`` is
    ``(start, length)`` from ``<start.length>``; ``modifiers`` those of PREVIEW (``LAZY``,
    RFC 8970 §3.2)."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    modifiers: tuple[str, ...] = ()

    @property
    def peek(self) -> bool:
        return self.name.endswith(".PEEK")


@dataclass(frozen=True, slots=True)
class Section:
    """RFC 9051 §6.4.5 section-spec: ``part`` (``1.2`` → ``(1, 2)``) and ``text`` (HEADER,
    HEADER.FIELDS, HEADER.FIELDS.NOT, MIME, TEXT or None); ``fields`` for HEADER.FIELDS[.NOT]."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        spec = ".".join(str(p) for p in self.part)
        if self.text:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.fields:
            spec += " (" + " ".join(self.fields) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """RFC 5465 §6 event; ``fetch_atts`` only for MessageNew. Names as RFC-spelled
    (MessageNew, MessageExpunge, FlagChange, AnnotationChange, MailboxName,
    SubscriptionChange, MailboxMetadataChange, ServerMetadataChange)."""

    name: str
    fetch_atts: tuple[FetchAtt, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyEventGroup:
    """RFC 5465 §6 event-group; ``events`` empty means NONE."""

    filter: MailboxFilter
    events: tuple[NotifyEvent, ...]


@dataclass(frozen=True, slots=True)
class Notify:
    """RFC 5465 §3: ``NOTIFY NONE`` (``none=True``) or ``NOTIFY SET [STATUS] groups``."""

    none: bool
    status: bool = False
    groups: tuple[NotifyEventGroup, ...] = ()


@dataclass(frozen=True, slots=True)
class GenUrlAuth:
    """RFC 4467 §7: (url-rump, mechanism) pairs."""

    items: tuple[tuple[bytes, str], ...]


@dataclass(frozen=True, slots=True)
class ResetKey:
    """RFC 4467 §7: no mailbox resets all keys."""

    mailbox: str | None
    mechanisms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UrlFetchItem:
    """One URLFETCH argument. A plain url (RFC 4467 §7) is ``UrlFetchItem(url)``; the RFC 5524
    §4 form ``(url [BODYPARTSTRUCTURE] [BINARY | BODY])`` sets ``extended`` and asks for the
    body only when BODY or BINARY was named."""

    url: bytes
    binary: bool = False
    bodypartstructure: bool = False
    body: bool = True
    extended: bool = False


@dataclass(frozen=True, slots=True)
class UrlFetch:
    """RFC 4467 §7, RFC 5524 §4. ``urls`` holds every argument's url in order; ``items`` holds
    every argument (plain or extended) when at least one used the RFC 5524 form, else ``()``.
    Use :meth:`requests` to get the typed arguments either way."""

    urls: tuple[bytes, ...]
    items: tuple[UrlFetchItem, ...] = ()

    def requests(self) -> tuple[UrlFetchItem, ...]:
        """All arguments in order (plain urls as ``UrlFetchItem(url)`` when ``items`` is empty)."""
        return self.items or tuple(UrlFetchItem(u) for u in self.urls)


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """CANCELUPDATE (RFC 5267 §4.5): tags of SEARCH/SORT RETURN (UPDATE) contexts to end."""

    tags: tuple[str, ...]


# ---------------------------------------------------------------- selected


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE (``uid_set`` None) and UID EXPUNGE (RFC 9051 §6.4.9)."""

    uid_set: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class SearchReturnOption:
    """ESEARCH return option (RFC 4731 §3.1, RFC 5182 SAVE, RFC 5267 §4.4 CONTEXT/UPDATE/PARTIAL):
    name upper-cased, ``value`` the PARTIAL range text."""

    name: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Search:
    """SEARCH / UID SEARCH (RFC 9051 §6.4.4). ``return_options`` None means a plain SEARCH
    (RFC 3501 untagged SEARCH reply); ``()`` means ``RETURN ()`` which is RETURN (ALL)."""

    uid: bool
    criteria: SearchKey
    charset: str | None = None
    return_options: tuple[SearchReturnOption, ...] | None = None


@dataclass(frozen=True, slots=True)
class Fetch:
    """FETCH / UID FETCH (RFC 9051 §6.4.5). ``macro`` is ALL/FAST/FULL when used (``items``
    then holds its expansion); CHANGEDSINCE/VANISHED from RFC 7162 §3.1.4.1, §3.2.6."""

    uid: bool
    sequence: SequenceSet
    items: tuple[FetchAtt, ...]
    macro: str | None = None
    changedsince: int | None = None
    vanished: bool = False


class StoreMode(enum.Enum):
    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


@dataclass(frozen=True, slots=True)
class Store:
    """STORE / UID STORE (RFC 9051 §6.4.6); UNCHANGEDSINCE RFC 7162 §3.1.3."""

    uid: bool
    sequence: SequenceSet
    mode: StoreMode
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class CopyMove:
    """COPY / MOVE and their UID forms (RFC 9051 §6.4.7, §6.4.8 / RFC 6851)."""

    uid: bool
    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """RFC 5256 §3 sort-key (ARRIVAL CC DATE FROM SIZE SUBJECT TO, RFC 5957 DISPLAYFROM DISPLAYTO)."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    """SORT / UID SORT (RFC 5256 §3); RETURN options from ESORT (RFC 5267 §3)."""

    uid: bool
    criteria: tuple[SortCriterion, ...]
    charset: str
    search: SearchKey
    return_options: tuple[SearchReturnOption, ...] | None = None


@dataclass(frozen=True, slots=True)
class Thread:
    """THREAD / UID THREAD (RFC 5256 §3): algorithm upper-cased."""

    uid: bool
    algorithm: str
    charset: str
    search: SearchKey


@dataclass(frozen=True, slots=True)
class MultiSearch:
    """ESEARCH (RFC 7377 §2): multimailbox search; ``sources`` empty means the selected mailbox."""

    sources: tuple[MailboxFilter, ...]
    criteria: SearchKey
    charset: str | None = None
    return_options: tuple[SearchReturnOption, ...] | None = None


@dataclass(frozen=True, slots=True)
class Acl:
    """RFC 4314 §3: SETACL (identifier, rights), DELETEACL (identifier), GETACL, LISTRIGHTS
    (identifier), MYRIGHTS — the mailbox and what the command carries."""

    mailbox: str
    identifier: str | None = None
    rights: str | None = None  # SETACL mod-rights, "+"/"-" kept (RFC 4314 §3.1)


CommandArgs = (
    NoArgs
    | Acl
    | Authenticate
    | Login
    | Enable
    | Select
    | Create
    | MailboxArg
    | Rename
    | List
    | Lsub
    | Status
    | Append
    | GetQuota
    | SetQuota
    | Id
    | Compress
    | GetMetadata
    | SetMetadata
    | Notify
    | GenUrlAuth
    | ResetKey
    | UrlFetch
    | CancelUpdate
    | Expunge
    | Search
    | Fetch
    | Store
    | CopyMove
    | Sort
    | Thread
    | MultiSearch
)
