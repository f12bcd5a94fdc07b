"""The one storage interface of Mailhouse: narrow async Protocols every backend implements.

Backends: `store.sqlite` (embedded default: SQLite WAL index + blob files) and
`store.postgres` (scale-out). Everything above `store/` speaks only these types.

The semantics below are written once, above the backends (`store/mail.py`, `store/directory.py`,
`store/queue.py` over the primitives of `store/backend.py`, composed by `store/store.py`), and
pinned down on every backend by `tests/store/test_contract.py`:
- UIDs are strictly increasing per mailbox and never reused (RFC 9051 §2.3.1.1);
  UIDVALIDITY is fixed for a mailbox's life and differs between a deleted mailbox and
  its re-creation; `uidnext` is one above the last UID ever assigned.
- MODSEQ (RFC 7162 §3.1) is per mailbox, strictly increasing: each append, flag change
  and expunge gets a new modseq greater than all before; `highestmodseq` is the max.
- Expunged UIDs are remembered with the modseq of their expunge (for QRESYNC VANISHED).
- A call that changes data returns only after the change is durable (committed, and
  blobs fsynced before the index row pointing at them is committed).
- Changes are published on the change feed only after commit.
- Message blobs are stored with CRLF line endings and a final CRLF (callers normalise with
  `store.crlf.to_crlf`), so `MessageRecord.size` is exactly what IMAP and POP3 send.
- `append` with a `delivery_key` already used in that mailbox is a no-op returning the
  existing UID: redelivery after a crash never yields two copies.
- `try_lock_maildrop` excludes every other holder of the same mailbox on the same store
  (same process, other workers, other nodes) and never outlives its holder: the lease ends
  on `release()` or when the holding process dies.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from mailhouse.store.spool import SpooledMessage

SPECIAL_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),  # RFC 6154 §2
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


class StoreError(Exception):
    """Base of store errors."""


class AlreadyExists(StoreError):
    pass


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """A concurrent change made this operation impossible (retry may succeed)."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer Mailhouse: this version must not write to it
    (issue 16 §8). Upgrade this node; during a rolling upgrade, nodes that were already
    running keep serving (migrations only add), but none of the old version starts again."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the store's schema is version {found}, newer than this Mailhouse knows ({known}):"
            " upgrade Mailhouse on this node"
        )
        self.found, self.known = found, known


class StoreUnavailable(StoreError):
    """The database cannot be reached or used right now (connection lost, server restarting,
    pool exhausted, file locked or unreadable): the operation did not happen or its outcome
    is unknown, and the same request may succeed later (issue 12 item 11).

    Raised by the backends' engines in place of the driver's connection-level errors, so
    that no caller mistakes a lost *database* connection for a lost *client* connection
    (``ConnectionError``). Protocol adapters answer it with their temporary-failure reply:
    SMTP ``451 4.3.0`` (RFC 3463 §3.5), IMAP ``NO [UNAVAILABLE]`` (RFC 5530 §3), POP3
    ``-ERR [SYS/TEMP]`` (RFC 3206 §4), HTTP ``503`` with ``Retry-After`` (RFC 9110 §15.6.4).
    """


@dataclass(frozen=True, slots=True)
class Domain:
    id: int
    name: str
    created: float


@dataclass(frozen=True, slots=True)
class ScramKeys:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    domain_id: int
    password_hash: str
    quota_bytes: int  # 0: unlimited
    quota_messages: int  # 0: unlimited
    is_admin: bool
    scram: ScramKeys | None
    created: float


@dataclass(frozen=True, slots=True)
class Alias:
    id: int
    source: str  # "sales@example.org", or "@example.org" for a catch-all
    destination: str  # an address (local or remote)


@dataclass(frozen=True, slots=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str  # "rsa-sha256" | "ed25519-sha256"
    private_key: bytes  # PEM (rsa) or raw base64 seed (ed25519), as dkimpy takes it
    public_record: str  # the TXT record value to publish


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    account_id: int
    name: str  # hierarchy delimiter "/", UTF-8
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None


_OBJECTID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def emailid_for_blob(blob_key: str) -> str:
    """The EMAILID (RFC 8474 §5.1) of content first stored under ``blob_key``: ``M`` + the key,
    or + 32 hex of its SHA-256 where the key has characters an objectid may not (§7:
    ``1*255(ALPHA / DIGIT / "_" / "-")``). Migration 7 gives existing rows the same value."""
    if blob_key and len(blob_key) < 255 and all(c in _OBJECTID_CHARS for c in blob_key):
        return "M" + blob_key
    return "M" + hashlib.sha256(blob_key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One access-control entry of a mailbox (RFC 4314 §2): IDENTIFIER holds RIGHTS."""

    identifier: str  # an account address, "anyone", or "anyone@<domain>" (everyone at a domain)
    rights: str  # normalised RFC 4314 §2.1 rights, in "lrswipkxtea" order


@dataclass(frozen=True, slots=True)
class SharedMailbox:
    """A mailbox of another account that an account may see (RFC 4314 ``l``), with its rights."""

    mailbox: Mailbox
    owner: str  # the owning account's address
    rights: str  # the effective rights of the asking account


@dataclass(frozen=True, slots=True)
class MessageRecord:
    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]  # system flags ("\\Seen") and keywords
    internaldate: float  # seconds since the epoch
    size: int
    blob_key: str
    saved: float = 0.0  # when it landed in this mailbox (SAVEDATE, RFC 8514)
    # RFC 8474 §5.1 EMAILID: given when the content is first stored (emailid_for_blob), kept by
    # COPY, MOVE and `store copy` (whose blob keys may change); "" only for a record built by hand
    emailid: str = ""


@dataclass(frozen=True, slots=True)
class NewMessage:
    mailbox_id: int
    blob_key: str
    size: int
    flags: frozenset[str] = frozenset()
    internaldate: float = 0.0
    delivery_key: str | None = None  # idempotency key (queue id + recipient)
    emailid: str = ""  # RFC 8474 §5.1: the source's on COPY/MOVE; "" = a new content instance
    # `mailhouse import` (transfer/): the source's UID, taken when it is >= the mailbox's UIDNEXT
    # (UIDs only grow: a lower one gets the next UID as usual); 0 = the next UID
    uid: int = 0


class FlagMode(enum.Enum):
    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True, slots=True)
class FlagResult:
    updated: list[MessageRecord]
    failed_uids: list[int]  # UNCHANGEDSINCE conflicts (RFC 7162 §3.1.3)


class ChangeKind(enum.StrEnum):
    """What a change-feed item reports (a StrEnum: equal to its value, "append" == APPEND)."""

    APPEND = "append"  # new message(s) in the mailbox (RFC 5465 §5.2 MessageNew)
    FLAGS = "flags"  # flag change (RFC 5465 §5.3 FlagChange)
    EXPUNGE = "expunge"  # message(s) expunged (RFC 5465 §5.2 MessageExpunge)
    MAILBOX = "mailbox"  # mailbox created/renamed/deleted, or "re-read, changes may be lost"
    SUBSCRIPTION = "subscription"  # RFC 5465 §5.5 SubscriptionChange
    METADATA = "metadata"  # RFC 5465 §5.6-7 MailboxMetadataChange / ServerMetadataChange


class QueueStatus(enum.StrEnum):
    """Delivery state of one queued recipient (a StrEnum: equal to its value)."""

    PENDING = "pending"  # not tried yet
    DEFERRED = "deferred"  # a transient failure (RFC 5321 §4.2.1 4yz): retried later
    DELIVERED = "delivered"
    FAILED = "failed"  # permanent failure or expired (RFC 5321 §4.5.4.1): bounced


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change, as the change feed broadcasts it (IDLE/NOTIFY wake-ups)."""

    account_id: int
    mailbox_id: int
    kind: ChangeKind
    modseq: int = 0

    def __post_init__(self) -> None:
        if type(self.kind) is not ChangeKind:  # callers may still pass the plain string
            object.__setattr__(self, "kind", ChangeKind(self.kind))


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int
    messages: int


@dataclass(frozen=True, slots=True)
class Mark:
    """A shared, expiring fact about a client or account (`Limits`): a ban, a passed pregreet test."""

    key: str
    value: str
    expires: float  # epoch seconds


class ReportKind(enum.Enum):
    """The reports that arrive for hosted domains (`reports/`, `store/reports.py`)."""

    DMARC = "dmarc"  # RFC 7489 §7.2 aggregate report
    TLSRPT = "tlsrpt"  # RFC 8460 SMTP TLS report


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """One received report, summarised: (domain, kind, org, report_id) identifies it."""

    domain: str  # the hosted domain it reports on
    kind: ReportKind
    org: str  # reporting organisation
    report_id: str
    begin: float  # date range, epoch seconds
    end: float
    received: float
    rows: str  # JSON list: per source (DMARC) or per policy (TLS-RPT), see reports/intake.py


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One aggregated row of a report we SEND (`reports/outbound.py`): (kind, day, domain, key)
    identifies it and COUNT grows with every message or session it stands for."""

    kind: ReportKind
    day: str  # UTC date, YYYY-MM-DD
    domain: str  # the policy domain the report is for (DMARC header-from's policy / TLS-RPT domain)
    key: str  # canonical JSON of the row's fields (reports/dmarc_out.py, reports/tlsrpt_out.py)
    count: int


@dataclass(slots=True)
class QueueRecipient:
    address: str
    status: QueueStatus = QueueStatus.PENDING
    last_reply: str = ""
    notify: str = ""  # DSN NOTIFY (RFC 3461 §4.1), comma list; "" = default
    orcpt: str = ""  # DSN ORCPT (RFC 3461 §4.2)

    def __post_init__(self) -> None:
        if type(self.status) is not QueueStatus:  # callers may still pass the plain string
            self.status = QueueStatus(self.status)


@dataclass(slots=True)
class QueueEntry:
    id: str
    sender: str  # "" for the null sender
    recipients: list[QueueRecipient]
    blob_key: str
    size: int
    created: float
    next_attempt: float
    attempts: int = 0
    ret: str = ""  # DSN RET=FULL|HDRS
    envid: str = ""  # DSN ENVID
    warned: bool = False
    lease_owner: str = ""
    lease_until: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class Directory(Protocol):
    async def directory_generation(self) -> int: ...  # changes whenever domains/accounts/aliases/mailboxes do
    async def add_domain(self, name: str) -> Domain: ...
    async def get_domain(self, name: str) -> Domain | None: ...
    async def list_domains(self) -> list[Domain]: ...
    async def remove_domain(self, name: str) -> None: ...

    async def add_account(
        self,
        address: str,
        password_hash: str,
        *,
        quota_bytes: int = 0,
        quota_messages: int = 0,
        is_admin: bool = False,
        scram: ScramKeys | None = None,
    ) -> Account: ...
    async def get_account(self, address: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: int) -> Account | None: ...
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...
    async def set_password(self, address: str, password_hash: str, scram: ScramKeys | None) -> None: ...
    async def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> None: ...
    async def remove_account(self, address: str) -> None: ...

    async def add_alias(self, source: str, destination: str) -> Alias: ...
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    async def aliases_for(self, source: str) -> list[Alias]: ...
    async def remove_alias(self, source: str, destination: str | None = None) -> None: ...

    async def set_dkim_key(self, key: DkimKey) -> None: ...
    async def get_dkim_keys(self, domain: str) -> list[DkimKey]: ...

    async def shared_secret(self, name: str, candidate: str) -> str: ...

    # a secret every worker and node of this store shares (the webmail's cookie key): stores
    # CANDIDATE under NAME unless a value is there already and returns the stored value, so
    # of several concurrent first callers exactly one candidate wins


class MailIndex(Protocol):
    async def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> Mailbox: ...
    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None: ...
    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None: ...
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]: ...
    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> Mailbox: ...
    async def delete_mailbox(self, mailbox_id: int) -> list[str]: ...  # returns blob keys now unreferenced
    async def subscriptions(self, account_id: int) -> list[str]: ...
    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None: ...

    async def append(
        self, messages: Sequence[NewMessage], bodies: Sequence[bytes] | None = None
    ) -> list[MessageRecord]: ...
    # BODIES: each message's octets, indexed in the same transaction (store/fts.py)
    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]: ...
    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]: ...
    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]: ...
    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> FlagResult: ...
    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> tuple[list[int], list[str]]: ...
    # returns (expunged uids, blob keys now unreferenced)
    async def copy(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]: ...
    async def move(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]: ...
    async def usage(self, account_id: int) -> Usage: ...
    async def get_metadata(self, account_id: int, mailbox: str, key: str) -> str | None: ...
    async def set_metadata(self, account_id: int, mailbox: str, key: str, value: str | None) -> None: ...
    async def claim_recent(self, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int: ...
    # IMAP \Recent (RFC 3501 §2.3.2): atomically raise the highest UID announced as recent in
    # this mailbox incarnation to at least up_to_uid; returns the value before (0 if none):
    # of two concurrent claims, exactly one sees each UID above the old value.
    async def recent_claimed(self, mailbox_id: int, uidvalidity: int) -> int: ...

    # the highest UID announced as recent (0 if none), without claiming (EXAMINE, STATUS)


class Acls(Protocol):
    """Mailbox access-control lists (RFC 4314), rules in `store/acl.py`.

    The owner of a mailbox holds every right implicitly (they are not stored); another account's
    rights are the union of the entries naming its address, ``anyone@<its domain>`` and
    ``anyone``."""

    async def get_acl(self, mailbox_id: int) -> list[AclEntry]: ...  # by identifier
    async def set_acl(self, mailbox_id: int, identifier: str, rights: str) -> str: ...
    # RIGHTS: "+xyz" adds, "-xyz" removes, else replaces (RFC 4314 §3.1); the stored rights after
    # (an entry left with no rights is removed); ValueError on an unknown right or identifier
    async def delete_acl(self, mailbox_id: int, identifier: str) -> bool: ...  # whether it existed
    async def my_rights(self, account: Account, mailbox: Mailbox) -> str: ...
    async def shared_with(self, account: Account) -> list[SharedMailbox]: ...

    # the other accounts' mailboxes on which ACCOUNT has at least the lookup right ``l``
    async def seen_by(self, account_id: int, mailbox_id: int) -> frozenset[int]: ...
    async def set_seen_by(
        self, account_id: int, mailbox_id: int, uids: Sequence[int], seen: bool
    ) -> None: ...

    # the \\Seen state of a reader (not the owner) of a shared mailbox, kept per reader (issue 13
    # §3): the UIDs that reader has seen; the message's own \\Seen flag is the owner's


class BlobStore(Protocol):
    async def put(self, data: bytes) -> str: ...  # durable before it returns; returns a new unique key
    async def get(self, key: str) -> bytes: ...
    async def delete(self, keys: Sequence[str]) -> None: ...
    async def put_file(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str: ...

    # the blob PREFIX + LENGTH octets of PATH from OFFSET (to the end when None), read in bounded
    # pieces, never whole in memory; durable before it returns; PATH is left as it is
    async def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    # the octets OFFSET..OFFSET+LENGTH-1 of a blob (fewer at its end, b"" past it); FileNotFoundError
    # when the blob is gone. The read side of streaming (issue 12 item 2): FETCH BODY[] and POP3 RETR
    # send a big message in bounded chunks instead of holding it whole.


class MaildropLease(Protocol):
    async def release(self) -> None: ...  # idempotent; a lease also ends when its holder dies


class MaildropLocks(Protocol):
    async def try_lock_maildrop(self, mailbox_id: int) -> MaildropLease | None: ...

    # RFC 1939 §8 exclusive POP3 access: the lease, or None when another session (in this
    # process, another worker or another node on the same store) holds the maildrop


class Queue(Protocol):
    async def enqueue(self, entry: QueueEntry, blob: bytes | SpooledMessage | None = None) -> None: ...
    # with BLOB: the store keeps it too (sets entry.blob_key), in the same transaction where it can
    async def claim_due(
        self, now: float, owner: str, lease_seconds: float, limit: int
    ) -> list[QueueEntry]: ...
    async def update(
        self, entry: QueueEntry
    ) -> None: ...  # persists status, attempts, next_attempt; releases lease
    async def renew_leases(self, owner: str, until: float) -> int: ...
    # heartbeat: OWNER's leases extended to UNTIL in one statement; how many it holds
    async def release_previous(self, node_prefix: str, keep_prefix: str) -> int: ...
    # a restarted node frees its earlier incarnations' leases: owners under NODE_PREFIX, not KEEP_PREFIX
    async def remove(self, entry_id: str) -> list[str]: ...  # returns unreferenced blob keys
    async def get(self, entry_id: str) -> QueueEntry | None: ...
    async def list(self) -> list[QueueEntry]: ...
    async def queue_size(self) -> tuple[int, float | None]: ...  # (entries, oldest created), one query


class Limits(Protocol):
    """Counters and marks shared by every worker and node (login failures, bans, send rates,
    clients that passed the pregreet test). Keys are the caller's: ``"<kind>:<subject>"``.

    Events are counted in a sliding window: `count_event` records one (of WEIGHT) and returns the
    sum of weights of KEY's events newer than ``now - window``, including it, in one transaction,
    so concurrent callers on different nodes each see the others' events. Events older than the
    window are dropped as a side effect; `purge_limits` drops the rest and expired marks.
    """

    async def count_event(self, key: str, now: float, window: float, weight: int = 1) -> int: ...
    async def events_within(self, key: str, now: float, window: float) -> int: ...
    async def clear_events(self, key: str) -> None: ...
    async def set_mark(self, key: str, value: str, expires: float) -> None: ...  # insert or replace
    async def get_mark(self, key: str, now: float) -> Mark | None: ...  # None once expired
    async def list_marks(self, prefix: str, now: float) -> list[Mark]: ...  # unexpired, by key
    async def remove_mark(self, key: str) -> bool: ...  # whether it existed
    async def purge_limits(self, now: float, events_before: float) -> int: ...

    # drop marks expired before NOW and events older than EVENTS_BEFORE; the number of rows


@dataclass(frozen=True, slots=True)
class WebSession:
    """A webmail login (store/websessions.py): the cookie holds a random token, the store only
    its SHA-256 (ID_HASH), so a stolen database yields no usable cookie."""

    id_hash: str
    account_id: int
    csrf: str  # the session's synchronizer token (OWASP CSRF)
    created: float
    last_seen: float
    expires: float
    client: str  # a short user-agent / IP summary shown on the settings page


class WebSessions(Protocol):
    """Server-side webmail sessions and per-user settings, shared by every worker and node.

    A session ends when it expires, is ended (logout, revoke, "log out everywhere"), or its
    account's password is set (the same transaction) or the account is removed (its rows go with it).
    """

    async def create_web_session(self, session: WebSession) -> None: ...  # drops the account's expired ones
    async def get_web_session(self, id_hash: str, now: float) -> WebSession | None: ...  # None once expired
    async def touch_web_session(self, id_hash: str, now: float) -> None: ...  # last_seen = NOW
    async def list_web_sessions(self, account_id: int, now: float) -> list[WebSession]: ...  # by created
    async def end_web_session(self, id_hash: str) -> bool: ...  # whether it existed
    async def end_web_sessions(self, account_id: int, keep: str = "") -> int: ...
    # every session of ACCOUNT_ID but KEEP (an id hash); the number ended
    async def user_settings(self, account_id: int) -> dict[str, str]: ...
    async def set_user_setting(self, account_id: int, key: str, value: str | None) -> None: ...  # None: drop


class TrainKind(enum.StrEnum):
    """What a message was trained as for an account's Bayes classifier (`store/spam.py`)."""

    SPAM = "spam"
    HAM = "ham"


class ListKind(enum.StrEnum):
    """A per-user sender list entry: always accept as ham, or always treat as spam."""

    ALLOW = "allow"
    BLOCK = "block"


class SpamLearning(Protocol):
    """Per-account spam learning, shared by every node: Bayes token counts (tokens are 63-bit
    hashes, `spam/tokens.py`), trained-message totals, what each message was trained as (KEY:
    the caller's stable message key, e.g. a Message-ID digest) and the user's sender lists
    (ENTRY: a lower-case address or domain)."""

    async def train_tokens(
        self, account_id: int, key: str, tokens: Sequence[int], kind: TrainKind | None
    ) -> bool: ...

    # KEY now counts as KIND (None: untrained); an earlier opposite training is taken back in the
    # same transaction; False when KEY was already trained as KIND (nothing changed)
    async def spam_token_counts(
        self, account_id: int, tokens: Sequence[int]
    ) -> dict[int, tuple[int, int]]: ...
    async def spam_totals(self, account_id: int) -> tuple[int, int]: ...  # (spam, ham) trained messages
    async def trained_as(self, account_id: int, key: str) -> TrainKind | None: ...
    async def set_sender_list(self, account_id: int, entry: str, kind: ListKind | None) -> bool: ...
    async def sender_lists(self, account_id: int) -> list[tuple[str, ListKind]]: ...  # by entry
    async def sender_list_match(self, account_id: int, entries: Sequence[str]) -> dict[str, ListKind]: ...


@dataclass(frozen=True, slots=True)
class Contact:
    """An address-book entry of one account (`store/contacts.py`); its fields are those of a
    vCard 4.0 (RFC 6350): UID (§6.7.6, unique per account), FN (§6.2.1), EMAIL (§6.4.2),
    NOTE (§6.7.2) and CATEGORIES (§6.7.1), the groups it belongs to."""

    uid: str
    name: str
    emails: tuple[str, ...] = ()
    notes: str = ""
    groups: tuple[str, ...] = ()
    updated: float = 0.0


@dataclass(frozen=True, slots=True)
class Collected:
    """A recipient collected from the account's sent mail: how often and when last written to."""

    address: str
    name: str
    last_used: float
    count: int


class SuggestionKind(enum.StrEnum):
    """Where an autocomplete answer comes from (`store/contacts.py` ranks them in this order)."""

    CONTACT = "contact"
    GROUP = "group"
    COLLECTED = "collected"


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One autocomplete answer: a contact's address, a collected address, or a group name
    (ADDRESS empty; it expands to its members' addresses when sent)."""

    kind: SuggestionKind
    name: str
    address: str


class ContactError(StoreError):
    """A contact breaks a rule of `store/contacts.py` (an invalid address, a limit)."""


class AddressBook(Protocol):
    """Per-account contacts, groups (a contact's CATEGORIES) and recipients collected from sent
    mail; the rules and limits are in `store/contacts.py`."""

    async def put_contact(self, account_id: int, contact: Contact) -> Contact: ...

    # insert or replace by UID ("" assigns a new one); validated, normalised; raises ContactError
    async def get_contact(self, account_id: int, uid: str) -> Contact | None: ...
    async def list_contacts(self, account_id: int) -> list[Contact]: ...  # by name, case-folded
    async def delete_contact(self, account_id: int, uid: str) -> bool: ...
    async def collect_recipients(
        self, account_id: int, rcpts: Sequence[tuple[str, str]], now: float
    ) -> None: ...

    # (address, display name) of a sent message: counted, last_used = NOW; oldest beyond the cap dropped
    async def collected_recipients(self, account_id: int) -> list[Collected]: ...  # most recent first
    async def suggest_recipients(self, account_id: int, prefix: str, limit: int) -> list[Suggestion]: ...
    async def group_members(self, account_id: int, group: str) -> list[tuple[str, str]] | None: ...

    # (name, address) of the group's contacts (case-insensitive name); None: no such group


class Reports(Protocol):
    """Summaries of the DMARC and TLS-RPT reports received for hosted domains (`store/reports.py`)."""

    async def add_report(self, summary: ReportSummary) -> bool: ...  # False: a duplicate, not stored
    async def list_reports(self, domain: str, kind: ReportKind, since: float) -> list[ReportSummary]: ...

    # reports whose date range ends at or after SINCE, oldest first

    # reports we send (RFC 7489 §7.2, RFC 8460): counts shared across nodes
    async def count_report_row(self, row: ReportRow) -> None: ...  # adds row.count to the row (upsert)
    async def report_rows(self, kind: ReportKind, day: str) -> list[ReportRow]: ...  # by (domain, key)
    async def claim_report(self, kind: ReportKind, day: str, domain: str, owner: str, now: float) -> bool: ...
    # True for the one caller that claims (kind, day, domain) first: that node sends the report
    async def drop_report_rows(self, kind: ReportKind, before: str) -> int: ...  # rows of days < BEFORE


class SieveProblem(enum.StrEnum):
    """Why a Sieve script operation was refused (`store/sieve.py`); the values are the RFC 5804
    §1.3 response codes the ManageSieve server answers with."""

    NONEXISTENT = "NONEXISTENT"  # no script of that name
    ACTIVE = "ACTIVE"  # the active script cannot be deleted
    ALREADYEXISTS = "ALREADYEXISTS"  # RENAMESCRIPT onto an existing name
    MAXSCRIPTS = "QUOTA/MAXSCRIPTS"  # the account has max_scripts scripts already
    MAXSIZE = "QUOTA/MAXSIZE"  # the script is bigger than max_script_size


class SieveScriptError(StoreError):
    def __init__(self, problem: SieveProblem, name: str) -> None:
        super().__init__(f"{problem.value}: {name!r}")
        self.problem, self.name = problem, name


@dataclass(frozen=True, slots=True)
class SieveScript:
    """One of an account's Sieve scripts (RFC 5804 LISTSCRIPTS): SIZE is octets of UTF-8."""

    name: str
    active: bool
    size: int


class SieveScripts(Protocol):
    """Per-account Sieve scripts (`store/sieve.py`): names are unique per account, at most one is
    active; MAX_SCRIPTS / MAX_SIZE are the caller's quota ([sieve] max_scripts, max_script_size)."""

    async def sieve_scripts(self, account_id: int) -> list[SieveScript]: ...  # by name
    async def get_sieve_script(self, account_id: int, name: str) -> str: ...  # raises NONEXISTENT
    async def active_sieve_script(self, account_id: int) -> tuple[str, str] | None: ...  # (name, content)
    async def sieve_have_space(
        self, account_id: int, name: str, size: int, max_scripts: int, max_size: int
    ) -> None: ...  # raises MAXSCRIPTS / MAXSIZE (RFC 5804 §2.3)
    async def put_sieve_script(
        self, account_id: int, name: str, content: str, max_scripts: int, max_size: int, now: float
    ) -> None: ...  # create or replace (an active script stays active)
    async def set_active_sieve_script(self, account_id: int, name: str | None) -> None: ...  # None: none
    async def delete_sieve_script(self, account_id: int, name: str) -> None: ...
    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None: ...
    async def claim_once(self, key: str, now: float, expires: float) -> bool: ...

    # claim_once: True for the one caller that finds no unexpired mark KEY and sets it (until
    # EXPIRES); vacation replies (RFC 5230 §4.1 once per sender per :days), one redirect per
    # delivery and one failure notice per script error use it, serialised on KEY across nodes


class Subscription(Protocol):
    """One subscriber's view of the change feed: registered in this process when `subscribe`
    returns (changes committed after that reach it); ``await sub`` additionally waits until the
    cross-process feed (PostgreSQL LISTEN) is in place and returns the subscription."""

    def __aiter__(self) -> Self: ...
    async def __anext__(self) -> Change: ...
    def __await__(self) -> Generator[Any, None, Self]: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def aclose(self) -> None: ...


class ChangeFeed(Protocol):
    def subscribe(self, account_id: int) -> Subscription: ...
    def commit_mark(self) -> int | None: ...

    # commit_mark: differs from every earlier mark once anything was committed to the store since
    # it was taken; None when the backend cannot tell without a query (then re-read)

    # live on return: ``feed = store.subscribe(acc)`` (or ``await store.subscribe(acc)`` to wait for
    # the other nodes' feed too); iterate with ``async for``; ``await feed.aclose()`` ends it


# ---------------------------------------------------------------- full-text index records
class DocState(enum.IntEnum):
    """What a document's terms cover."""

    INDEXED = 1  # every searchable text of the message: hits are exact for `FtsTerm.exact` queries
    PARTIAL = 2  # text over the cap (or too many terms): always scanned
    FAILED = 3  # extraction raised or the message was too big to read: always scanned


class Tag(enum.StrEnum):
    """Where a term's word was found (the first letter of every stored term)."""

    BODY = "b"  # decoded text of the text/* parts (what BODY scans)
    HEADERS = "h"  # every header line "Name: value", top level and MIME parts (TEXT, HEADER)
    SUBJECT = "s"
    FROM = "f"
    TO = "t"
    CC = "c"
    BCC = "k"
    HTML = "x"  # marker: the message has an inline text/html part (the webmail's HTML match)


@dataclass(frozen=True, slots=True)
class IndexDoc:
    """The index document of one blob: space-separated unique terms (empty unless INDEXED)."""

    state: DocState
    terms: str = ""


@dataclass(frozen=True, slots=True)
class FtsTerm:
    """Any of TAGS followed by WORD (``prefix``: WORD followed by anything)."""

    tags: tuple[Tag, ...]
    word: str
    prefix: bool


@dataclass(frozen=True, slots=True)
class FtsQuery:
    """Documents having every term. ``exact``: a hit is a match of the search key (no scan
    needed for INDEXED documents); otherwise hits are only candidates."""

    terms: tuple[FtsTerm, ...]
    exact: bool = False


@dataclass(frozen=True, slots=True)
class FtsResult:
    """Per query, the UIDs of the mailbox's messages whose document hits; and the UIDs of the
    mailbox's unindexed messages (candidates for every query)."""

    hits: list[frozenset[int]]
    unindexed: frozenset[int]


class WordIndex(Protocol):
    """The full-text word index (`store/fts.py`): narrows SEARCH, the exact matcher confirms."""

    async def search_index(self, mailbox_id: int, queries: Sequence[FtsQuery]) -> FtsResult: ...
    async def index_backlog(self, limit: int, after: str = "") -> list[str]: ...
    # blob keys of messages with no index document, ascending, after AFTER
    async def add_index_docs(self, docs: Sequence[tuple[str, IndexDoc]]) -> int: ...
    async def clear_index(self, account_id: int | None = None) -> int: ...


class Store(
    Directory,
    MailIndex,
    Acls,
    MaildropLocks,
    Queue,
    Limits,
    SpamLearning,
    AddressBook,
    Reports,
    SieveScripts,
    ChangeFeed,
    WordIndex,
    WebSessions,
    Protocol,
):
    """Everything a Mailhouse node needs; `blobs` is the blob store."""

    @property
    def blobs(self) -> BlobStore: ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def deliver(
        self, blob: bytes | SpooledMessage, messages: Sequence[NewMessage]
    ) -> list[MessageRecord]: ...
    async def append_octets(self, items: Sequence[tuple[bytes, NewMessage]]) -> list[MessageRecord]: ...

    # convenience: put blob, then append rows referencing it (blob_key filled in)
