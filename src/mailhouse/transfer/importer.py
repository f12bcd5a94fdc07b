"""The import engine shared by every source: folder mapping, dedup, batching, progress, report.

Idempotence and resumability: each imported message carries a *delivery key*
``import:<source identity>`` (`store/api.py`: a key already used in a mailbox makes the append a
no-op returning the existing message, checked under the mailbox lock). The key is written in the
same transaction as the message row (`Store.append_octets`: small blobs in that transaction too,
bigger ones durable files first), so the mapping source → message can never exist without the
message nor the message without the mapping: a run killed at any point (kill -9) leaves each
message either imported with its key or not at all, and the next run skips exactly the keys it
finds (`MailStore.delivery_keys`, read once per folder before any source message is read) and
imports the rest. Two runs at once cannot duplicate either: the second append of a key is a no-op.
A message the user expunged after the import is not remembered, so a later run brings it back.

Messages go through the store's normal append path (`append_octets`), so the change feed fires
and IDLE/NOTIFY sessions of a running server see them; the import works while `serve` runs, on
both store backends. Memory is flat in the number of messages: a folder's source keys are listed
(not its octets), and octets are read per batch (at most `BATCH_MESSAGES` messages and
`BATCH_BYTES` octets, or one message up to `max_message_size`).

UIDs (RFC 9051 §2.3.1.1): when the source names a UIDVALIDITY and the target mailbox never gave
a UID, the mailbox adopts it (`MailStore.adopt_uidvalidity`) and each message keeps its source UID
(`NewMessage.uid`, messages taken in ascending UID order), so clients that knew the source do not
download again. Otherwise Mailhouse assigns UIDs as for any append.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from mailhouse.store.api import Mailbox, NewMessage, StoreError
from mailhouse.store.crlf import to_crlf
from mailhouse.store.store import MailStore

log = logging.getLogger(__name__)

BATCH_MESSAGES = 200  # messages per append transaction (one group-committed fsync)
BATCH_BYTES = 8 << 20  # octets read ahead per batch
MAX_KEY = 200  # a delivery key longer than this is shortened to a SHA-256 (same on every run)

# RFC 6154 §2 special-use attributes by the folder names clients commonly give them (lower case)
SPECIAL_NAMES: dict[str, str] = {
    "sent": "\\Sent",
    "sent items": "\\Sent",
    "sent messages": "\\Sent",
    "sent mail": "\\Sent",
    "drafts": "\\Drafts",
    "draft": "\\Drafts",
    "trash": "\\Trash",
    "deleted items": "\\Trash",
    "deleted messages": "\\Trash",
    "junk": "\\Junk",
    "spam": "\\Junk",
    "junk e-mail": "\\Junk",
    "junk email": "\\Junk",
    "archive": "\\Archive",
    "archives": "\\Archive",
}
SPECIAL_USES = frozenset(SPECIAL_NAMES.values())


class SourceError(Exception):
    """One message (or folder) of the source cannot be read; the text is the report's reason."""


@dataclass(frozen=True, slots=True)
class SourceFolder:
    name: str  # the Mailhouse name ("/" hierarchy delimiter, UTF-8)
    where: str  # how the source names it, for the report
    special_use: str | None = None
    uidvalidity: int = 0  # 0: the source has none (or we could not read it)


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """A message as listed: metadata only, the octets come from `Source.read`."""

    key: str  # stable identity within the source (the same on every run)
    where: str  # for the report
    size: int  # octets as the source states them (-1: unknown until read)
    flags: frozenset[str] = frozenset()
    internaldate: float = 0.0
    uid: int = 0  # the source UID (0: none)
    error: str | None = None  # known to be unreadable before reading
    ref: object = None  # the source's handle for `read`


class Source(Protocol):
    """A synchronous source; every call runs in a worker thread."""

    def folders(self) -> list[SourceFolder]: ...
    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]: ...  # ascending UID when known
    def read(self, msg: SourceMessage, max_size: int) -> tuple[bytes, SourceMessage]: ...
    # the octets (and the message with what reading taught: key, flags, date); SourceError
    def close(self) -> None: ...


class ProgressSink(Protocol):
    def add_total(self, messages: int, octets: int) -> None: ...
    def advance(self, messages: int, octets: int) -> None: ...


class NoProgress:
    def add_total(self, messages: int, octets: int) -> None:
        pass

    def advance(self, messages: int, octets: int) -> None:
        pass


class Outcome(enum.Enum):
    IMPORTED = "imported"
    SKIPPED = "skipped"  # imported by an earlier run
    FAILED = "failed"


@dataclass(slots=True)
class Report:
    imported: int = 0
    skipped: int = 0
    octets: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    folders: dict[str, int] = field(default_factory=dict)  # target name -> messages imported
    uids_kept: list[str] = field(default_factory=list)  # target folders that kept source UIDs

    def lines(self, dry_run: bool = False) -> list[str]:
        verb = "would import" if dry_run else "imported"
        out = [
            f"{verb} {self.imported} message(s) ({self.octets} octets), skipped {self.skipped} already imported,"
            f" failed {len(self.failed)}"
        ]
        out += [f"  {name}: {n}" for name, n in sorted(self.folders.items())]
        if self.uids_kept:
            out.append("  UIDs and UIDVALIDITY kept in: " + ", ".join(self.uids_kept))
        out += [f"  failed: {where}: {reason}" for where, reason in self.failed]
        return out


def delivery_key(source_key: str) -> str:
    key = "import:" + source_key
    if len(key) > MAX_KEY:
        key = "import:sha256:" + hashlib.sha256(source_key.encode("utf-8", "surrogateescape")).hexdigest()
    return key


def special_use_for(name: str) -> str | None:
    """The RFC 6154 attribute a top-level folder's name suggests (``Sent Items`` → ``\\Sent``)."""
    if "/" in name:
        return None
    return SPECIAL_NAMES.get(name.strip().lower())


def clean_name(name: str) -> str:
    """A folder name Mailhouse accepts: UTF-8 (undecodable bytes, kept by the source as
    surrogate escapes, become U+FFFD), no empty or dot-only levels, no control characters."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    name = "".join(c if c.isprintable() else "\ufffd" for c in name)
    parts = [p.strip() for p in name.split("/")]
    parts = [p for p in parts if p and p not in (".", "..")]
    if not parts:
        return "INBOX"
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return "/".join(parts)


@dataclass(slots=True)
class _Item:
    msg: SourceMessage
    data: bytes = b""
    error: str | None = None


@dataclass(slots=True)
class _Plan:
    mailbox: Mailbox | None  # None: a dry run's folder that does not exist yet
    name: str
    keep_uids: bool
    done: set[str]  # delivery keys already in the mailbox
    todo: list[SourceMessage]


class Importer:
    """Import one SOURCE into the account ADDRESS of STORE (see the module docstring)."""

    def __init__(
        self,
        store: MailStore,
        source: Source,
        address: str,
        *,
        max_size: int,
        dry_run: bool = False,
        progress: ProgressSink | None = None,
        target_folder: str | None = None,
        keep_uids: bool = True,
    ) -> None:
        self.store = store
        self.source = source
        self.address = address
        self.max_size = max_size
        self.dry_run = dry_run
        self.progress: ProgressSink = progress or NoProgress()
        self.target_folder = target_folder  # every source folder into this one (mbox --folder)
        self.keep_uids = keep_uids
        self.report = Report()

    async def run(self) -> Report:
        acc = await self.store.get_account(self.address)
        if acc is None:
            raise StoreError(f"no such user {self.address}")
        try:
            folders = await asyncio.to_thread(self.source.folders)
            existing = {m.name: m for m in await self.store.list_mailboxes(acc.id)}
            plans = [p for f in folders if (p := await self._plan(acc.id, f, existing)) is not None]
            todo = [m for p in plans for m in p.todo]
            self.progress.add_total(len(todo), sum(max(m.size, 0) for m in todo))  # listed first: a true ETA
            for plan in plans:
                await self._copy(plan)
        finally:
            await asyncio.to_thread(self.source.close)
        return self.report

    def _target_name(self, folder: SourceFolder, existing: dict[str, Mailbox]) -> tuple[str, str | None]:
        if self.target_folder is not None:
            name = clean_name(self.target_folder)
            return name, special_use_for(name)
        name = clean_name(folder.name)
        use = folder.special_use if folder.special_use in SPECIAL_USES else special_use_for(name)
        if use is not None:  # RFC 6154: the account's own \Sent etc., whatever the source calls it
            for mb in existing.values():
                if mb.special_use == use:
                    return mb.name, use
        return name, use

    async def _mailbox(
        self, account_id: int, name: str, use: str | None, existing: dict[str, Mailbox]
    ) -> Mailbox | None:
        mb = existing.get(name)
        if mb is None and not self.dry_run:
            mb = await self.store.create_mailbox(account_id, name, use if use else None)
            existing[name] = mb
        return mb

    async def _plan(
        self, account_id: int, folder: SourceFolder, existing: dict[str, Mailbox]
    ) -> _Plan | None:
        """Map FOLDER to its mailbox (created, UIDVALIDITY adopted) and list what is new in it."""
        name, use = self._target_name(folder, existing)
        try:
            mb = await self._mailbox(account_id, name, use, existing)
        except StoreError as e:
            self.report.failed.append((folder.where, f"cannot create mailbox {name!r}: {e}"))
            return None
        done: set[str] = set()
        keep = False
        if mb is not None:
            done = set((await self.store.delivery_keys(mb.id)).values())
            if self.keep_uids and folder.uidvalidity and not self.dry_run:
                keep = await self.store.adopt_uidvalidity(mb.id, folder.uidvalidity)
                if keep and name not in self.report.uids_kept:
                    self.report.uids_kept.append(name)
        self.report.folders.setdefault(name, 0)
        try:
            listing = await asyncio.to_thread(lambda: list(self.source.messages(folder)))
        except SourceError as e:
            self.report.failed.append((folder.where, f"cannot list the folder: {e}"))
            return None
        todo: list[SourceMessage] = []
        for m in listing:
            if delivery_key(m.key) in done:
                self.report.skipped += 1
            else:
                todo.append(m)
        return _Plan(mb, name, keep, done, todo)

    async def _copy(self, plan: _Plan) -> None:
        # the next batch is read (worker thread) while this one commits (the store's writer)
        it = iter(plan.todo)
        ahead = asyncio.ensure_future(asyncio.to_thread(self._read_batch, it, plan.done))
        try:
            while batch := await ahead:
                ahead = asyncio.ensure_future(asyncio.to_thread(self._read_batch, it, plan.done))
                await self._store_batch(plan.mailbox, plan.name, batch, plan.keep_uids)
        finally:
            if not ahead.done():
                await asyncio.wait([ahead])  # the iterator is not shared with a live reader

    def _read_batch(self, it: Iterator[SourceMessage], done: set[str]) -> list[_Item]:
        """Read the next messages' octets (worker thread): up to BATCH_MESSAGES / BATCH_BYTES."""
        out: list[_Item] = []
        nbytes = 0
        for m in it:
            item = _Item(m)
            if m.error is not None:
                item.error = m.error
            elif m.size > self.max_size:
                item.error = f"{m.size} octets, over the limit of {self.max_size} ([limits] max_message_size)"
            else:
                try:
                    data, m2 = self.source.read(m, self.max_size)
                    item.msg = m2
                    data = to_crlf(data)  # store/api.py invariant: stored messages use CRLF
                    if not data.strip():
                        item.error = (
                            "empty message (0 octets)" if not data else "empty message (blank lines only)"
                        )
                    elif len(data) > self.max_size:
                        item.error = f"{len(data)} octets, over the limit of {self.max_size} ([limits] max_message_size)"
                    elif delivery_key(m2.key) in done:
                        item.error = ""  # its key (learnt by reading, e.g. mbox content) is imported
                    else:
                        item.data = data
                except SourceError as e:
                    item.error = str(e)
                except OSError as e:
                    item.error = f"cannot read: {e}"
            out.append(item)
            nbytes += len(item.data)
            if len(out) >= BATCH_MESSAGES or nbytes >= BATCH_BYTES:
                break
        return out

    async def _store_batch(self, mb: Mailbox | None, name: str, batch: list[_Item], keep: bool) -> None:
        good: list[_Item] = []
        for item in batch:
            if item.error == "":
                self.report.skipped += 1
                self.progress.advance(1, max(item.msg.size, 0))
            elif item.error is not None:
                self.report.failed.append((item.msg.where, item.error))
                self.progress.advance(1, max(item.msg.size, 0))
            else:
                good.append(item)
        if not good:
            return
        if mb is None or self.dry_run:
            self._count(name, good)
            return
        # a key seen twice in one batch (identical mbox copies are keyed apart, so only a broken
        # source) is one message: api.py's delivery-key rule makes the second append a no-op
        rows = [
            (
                it.data,
                NewMessage(
                    mb.id,
                    "",
                    0,
                    flags=it.msg.flags,
                    internaldate=it.msg.internaldate,
                    delivery_key=delivery_key(it.msg.key),
                    uid=it.msg.uid if keep else 0,
                ),
            )
            for it in good
        ]
        try:
            await self.store.append_octets(rows)
        except StoreError as e:
            if len(rows) == 1:
                self.report.failed.append((good[0].msg.where, f"store refused it: {e}"))
                self.progress.advance(1, max(good[0].msg.size, 0))
                return
            for it in good:  # find the one that fails; the rest go in one by one
                await self._store_batch(mb, name, [it], keep)
            return
        self._count(name, good)

    def _count(self, name: str, good: list[_Item]) -> None:
        n = len(good)
        octets = sum(len(it.data) for it in good)
        self.report.imported += n
        self.report.octets += octets
        self.report.folders[name] = self.report.folders.get(name, 0) + n
        self.progress.advance(n, sum(max(it.msg.size, 0) for it in good))  # as the total counted them
