"""`mailhouse restore DEST`: a backup (`backup/snapshot.py`) back into a store.

- Whole store: into an EMPTY store of either backend, through `store/copy.py` (the code of
  `mailhouse store copy`), so domains, accounts, aliases, mailboxes with UIDVALIDITY/UIDNEXT/
  HIGHESTMODSEQ, every message's UID, MODSEQ, flags and dates, subscriptions and the queue come
  back as they were at the snapshot point. A store with any domain, account or queued message
  is refused (`RestoreError`), never merged into.
- One account (`--user`), optionally one folder (`--folder`): next to live data, touching
  nothing else. The account's folders come back under a new parent `Restored YYYY-MM-DD`
  (the backup's date), e.g. `Restored 2026-12-08/INBOX`, with each message's octets, flags,
  keywords and INTERNALDATE (new UIDs: these are new mailboxes with their own UIDVALIDITY).
  Nothing is merged or deduplicated: the live folders are not touched, and the user moves back
  what they want. An account missing from the live store is recreated from the backup (same
  password hash, SCRAM keys and quota) with its folders under their own names.
  If the `Restored …` folder already exists, the restore is refused (rename or delete it first).

The backup directory is never written: the index is opened from a temporary copy.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mailhouse.accounts.mailbox_names import DELIM
from mailhouse.backup.snapshot import BLOBS, INDEX, BackupError, read_manifest
from mailhouse.store.api import NewMessage, Store
from mailhouse.store.copy import CopyResult, copy_store
from mailhouse.store.sqlite.backend import SqliteStore

BATCH = 100  # messages appended per transaction in a per-user restore
BATCH_BYTES = 16 * 1024 * 1024  # ... or fewer: the octets held at once (one big message alone)


class RestoreError(BackupError):
    pass


@asynccontextmanager
async def open_backup(dest: Path) -> AsyncIterator[tuple[Store, dict[str, object]]]:
    """The backup at DEST opened as a store (read from a temporary copy of its index) + its manifest."""
    man = read_manifest(dest)
    with tempfile.TemporaryDirectory(prefix="mailhouse-restore-") as tmp:
        db = Path(tmp) / INDEX
        await asyncio.to_thread(shutil.copyfile, dest / INDEX, db)
        store = SqliteStore(db, dest / BLOBS, lock_dir=Path(tmp) / "locks")
        await store.open()
        try:
            yield store, man
        finally:
            await store.close()


async def is_empty(store: Store) -> bool:
    return not (await store.list_domains() or await store.list_accounts() or await store.list())


async def restore_all(dest: Path, target: Store) -> CopyResult:
    """Everything in the backup at DEST into TARGET (opened, empty)."""
    if not await is_empty(target):
        raise RestoreError(
            "the target store is not empty (it has domains, accounts or queued mail): a whole-store restore"
            " goes into an empty store only; use --user ADDRESS to bring back one account next to live data"
        )
    async with open_backup(dest) as (src, _):
        return await copy_store(src, target)


@dataclass
class UserRestore:
    address: str
    parent: str  # "" when the account was recreated under its own folder names
    mailboxes: int = 0
    messages: int = 0
    bytes: int = 0


def restored_parent(stamp: float) -> str:
    return "Restored " + time.strftime("%Y-%m-%d", time.gmtime(stamp))


async def _ensure_mailbox(target: Store, account_id: int, name: str) -> int:
    parts = name.split(DELIM)
    mb_id = 0
    for i in range(1, len(parts) + 1):  # parents first, as IMAP CREATE makes them (RFC 9051 §6.3.4)
        sub = DELIM.join(parts[:i])
        mb = await target.get_mailbox(account_id, sub)
        mb_id = mb.id if mb is not None else (await target.create_mailbox(account_id, sub)).id
    return mb_id


async def restore_user(dest: Path, target: Store, address: str, folder: str | None = None) -> UserRestore:
    """ADDRESS's folders (or only FOLDER) from the backup at DEST into TARGET, beside live data."""
    address = address.lower()
    async with open_backup(dest) as (src, man):
        acc = await src.get_account(address)
        if acc is None:
            raise RestoreError(f"the backup has no account {address}")
        boxes = sorted(await src.list_mailboxes(acc.id), key=lambda m: m.name)
        if folder is not None:
            boxes = [m for m in boxes if m.name == folder or m.name.startswith(folder + DELIM)]
            if not boxes:
                raise RestoreError(f"the backup has no folder {folder!r} for {address}")
        live = await target.get_account(address)
        if live is None:  # recreate the account as it was
            if await target.get_domain(address.rpartition("@")[2]) is None:
                await target.add_domain(address.rpartition("@")[2])
            live = await target.add_account(
                address,
                acc.password_hash,
                quota_bytes=acc.quota_bytes,
                quota_messages=acc.quota_messages,
                is_admin=acc.is_admin,
                scram=acc.scram,
            )
            parent = ""
        else:
            parent = restored_parent(float(man["time"]))  # type: ignore[arg-type]
            if await target.get_mailbox(live.id, parent) is not None:
                raise RestoreError(f"{address} already has a folder {parent!r}: rename or delete it first")
        res = UserRestore(address, parent)
        for mb in boxes:
            name = f"{parent}{DELIM}{mb.name}" if parent else mb.name
            mb_id = await _ensure_mailbox(target, live.id, name)
            res.mailboxes += 1
            items: list[tuple[bytes, NewMessage]] = []
            held = 0
            for m in await src.list_messages(mb.id):
                data = await src.blobs.get(m.blob_key)
                items.append(
                    (data, NewMessage(mb_id, "", m.size, flags=m.flags, internaldate=m.internaldate))
                )
                held += len(data)
                if len(items) >= BATCH or held >= BATCH_BYTES:
                    await _append(target, items, res)
                    items, held = [], 0
            await _append(target, items, res)
        return res


async def _append(target: Store, items: list[tuple[bytes, NewMessage]], res: UserRestore) -> None:
    if items:
        await target.append_octets(items)
        res.messages += len(items)
        res.bytes += sum(len(d) for d, _ in items)


__all__ = ["RestoreError", "UserRestore", "open_backup", "restore_all", "restore_user", "restored_parent"]
