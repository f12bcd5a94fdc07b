"""Mail-index rules, written once over the backend primitives (`store/backend.py` `Tx`).

RFCs: RFC 9051 (UIDs, UIDVALIDITY, COPY, EXPUNGE), RFC 7162 (MODSEQ, UNCHANGEDSINCE, QRESYNC
VANISHED), RFC 6851 (MOVE), RFC 3501 §2.3.2 (\\Recent), RFC 5465 (NOTIFY events), RFC 5464
(METADATA).

Invariants (the ones `store/api.py` promises, pinned by `tests/store/test_contract.py`):
- Every write locks the mailboxes it touches first (`Tx.lock_mailboxes`, ascending ids), then
  allocates UIDs/modseqs with `Tx.bump` under that lock; usage counters change in the same
  transaction as the rows.
- UID lists from clients are taken as sets in request order: a UID named twice is one message
  (one flag update, one copy, one expunge).
- A blob is freed only when no message and no queue entry references it any more, in the same
  transaction where the backend keeps it in the database, after commit otherwise.
- Changes are published inside the transaction (delivered after commit).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from mailhouse.store.api import (
    Change,
    ChangeKind,
    FlagMode,
    FlagResult,
    Mailbox,
    MessageRecord,
    NewMessage,
    NotFound,
    emailid_for_blob,
)
from mailhouse.store.backend import Tx


def unique(uids: Sequence[int]) -> list[int]:
    """UIDS in request order, each once (a UID named twice is one message)."""
    return list(dict.fromkeys(int(u) for u in uids))


async def free_blobs(tx: Tx, keys: Sequence[str] | set[str]) -> list[str]:
    """Of KEYS, those nothing references any more; the ones kept in the database go now."""
    free = await tx.unreferenced(keys)
    if free:
        await tx.delete_blobs(free)
        await tx.fts_delete(free)  # store/fts.py invariant: a freed blob's index document goes with it
    return free


# -------------------------------------------------------------------- mailboxes
async def create_mailbox(
    tx: Tx, account_id: int, name: str, special_use: str | None, *, publish: bool
) -> Mailbox:
    # RFC 9051 §2.3.1.1: a re-created mailbox must get a new UIDVALIDITY, so it is strictly
    # increasing across the whole store (time-based, bumped past the last one given).
    uv = await tx.next_uidvalidity(int(time.time()))
    mid = await tx.insert_mailbox(account_id, name, uv, special_use)
    if publish:
        await tx.publish(Change(account_id, mid, ChangeKind.MAILBOX, 0))
    return Mailbox(mid, account_id, name, uv, 1, 1, special_use)


async def rename_mailbox(tx: Tx, mailbox_id: int, new_name: str) -> Mailbox:
    mb = await tx.rename_mailbox(mailbox_id, new_name)
    if mb is None:
        raise NotFound("no such mailbox")
    await tx.publish(Change(mb.account_id, mailbox_id, ChangeKind.MAILBOX, 0))
    return mb


async def delete_mailbox(tx: Tx, mailbox_id: int) -> list[str]:
    got = await tx.delete_mailbox(mailbox_id)
    if got is None:
        raise NotFound("no such mailbox")
    account_id, rows = got
    await tx.drop_acl([mailbox_id], None, None)  # store/acl.py: entries go with their mailbox
    await tx.adjust_usage({account_id: (-len(rows), -sum(size for _, size in rows))})
    await tx.publish(Change(account_id, mailbox_id, ChangeKind.MAILBOX, 0))
    return await free_blobs(tx, {key for key, _ in rows})


async def set_subscribed(tx: Tx, account_id: int, name: str, subscribed: bool) -> None:
    if await tx.set_subscription(account_id, name, subscribed):
        # a no-op is not a change; RFC 5465 §5.5 SubscriptionChange
        await tx.publish(Change(account_id, 0, ChangeKind.SUBSCRIPTION, 0))


async def set_metadata(tx: Tx, account_id: int, mailbox: str, key: str, value: str | None) -> None:
    if await tx.set_metadata(account_id, mailbox, key, value):
        # RFC 5465 §5.6-7 Mailbox/ServerMetadataChange; a no-op is not a change
        await tx.publish(Change(account_id, 0, ChangeKind.METADATA, 0))


async def adopt_uidvalidity(tx: Tx, mailbox_id: int, uidvalidity: int) -> bool:
    """Give a mailbox that has never assigned a UID the source's UIDVALIDITY (`mailhouse import`),
    so clients that knew the source keep their caches; whether the mailbox now has it.

    RFC 9051 §2.3.1.1: the pair (UIDVALIDITY, UID) must never name two messages. A mailbox whose
    UIDNEXT is still 1 has named none, so no client can hold a UID of it under any UIDVALIDITY;
    once a UID was given (even if expunged since) the UIDVALIDITY is never changed here.
    """
    await tx.lock_mailboxes([mailbox_id])
    mb = await tx.mailbox_by_id(mailbox_id)
    if mb is None:
        raise NotFound("no such mailbox")
    if mb.uidvalidity == uidvalidity:
        return True
    if mb.uidnext != 1 or uidvalidity < 1 or uidvalidity > 0xFFFFFFFF:  # RFC 9051: nz-number32
        return False
    await tx.set_uidvalidity(mailbox_id, uidvalidity)
    await tx.publish(Change(mb.account_id, mailbox_id, ChangeKind.MAILBOX, 0))
    return True


# -------------------------------------------------------------------- messages
async def append(tx: Tx, messages: Sequence[NewMessage]) -> list[MessageRecord]:
    """Append rows (blobs already stored or in this transaction); idempotent per delivery key."""
    await tx.lock_mailboxes(m.mailbox_id for m in messages)
    out: list[MessageRecord] = []
    usage: dict[int, tuple[int, int]] = {}
    now = time.time()
    for m in messages:
        if m.delivery_key is not None:
            # api.py: a delivery key already used in the mailbox is a no-op returning the
            # existing message (checked under the mailbox lock: two nodes store one copy)
            old = await tx.message_by_delivery_key(m.mailbox_id, m.delivery_key)
            if old is not None:
                out.append(old)
                continue
        if m.uid > 0:
            # an import keeps the source's UID where it can (RFC 9051 §2.3.1.1: UIDs strictly
            # ascending, gaps allowed): UIDNEXT only ever rises, so a lower UID gets the next one
            await tx.raise_uidnext(m.mailbox_id, m.uid)
        acc, uid, modseq = await tx.bump(m.mailbox_id, 1)  # RFC 9051 §2.3.1.1, RFC 7162 §3.1
        # RFC 8474 §5.1: a new content instance gets its EMAILID here; COPY/MOVE pass theirs
        eid = m.emailid or emailid_for_blob(m.blob_key)
        rec = MessageRecord(
            m.mailbox_id, uid, modseq, m.flags, m.internaldate or now, m.size, m.blob_key, now, eid
        )
        await tx.insert_messages([(rec, m.delivery_key)])
        n, size = usage.get(acc, (0, 0))
        usage[acc] = (n + 1, size + m.size)
        await tx.publish(Change(acc, m.mailbox_id, ChangeKind.APPEND, modseq))
        out.append(rec)
    await tx.adjust_usage(usage)
    return out


async def append_with_blobs(
    tx: Tx, messages: Sequence[NewMessage], blobs: Sequence[tuple[str, bytes]]
) -> list[MessageRecord]:
    """Append rows and write the in-transaction BLOBS (key, octets) they point at: one commit."""
    recs = await append(tx, messages)
    for key, data in blobs:
        await tx.put_blob(key, data)
    return recs


async def deliver_in_tx(tx: Tx, key: str, blob: bytes, messages: Sequence[NewMessage]) -> list[MessageRecord]:
    """Append rows for a blob kept in the database: the blob is written only if some row is new."""
    recs = await append(tx, [replace(m, blob_key=key, size=len(blob)) for m in messages])
    if any(r.blob_key == key for r in recs):  # not all were repeats of an earlier delivery
        await tx.put_blob(key, blob)
    return recs


def new_flags(mode: FlagMode, old: frozenset[str], flags: frozenset[str]) -> frozenset[str]:
    if mode is FlagMode.ADD:
        return old | flags
    if mode is FlagMode.REMOVE:
        return old - flags
    return flags


async def store_flags(
    tx: Tx,
    mailbox_id: int,
    uids: Sequence[int],
    mode: FlagMode,
    flags: frozenset[str],
    unchanged_since: int | None,
) -> FlagResult:
    wanted = unique(uids)  # RFC 9051 §6.4.6: each message of the set is updated (and reported) once
    await tx.lock_mailboxes([mailbox_id])
    have = {r.uid: r for r in await tx.messages(mailbox_id, wanted)}
    failed: list[int] = []
    changes: list[tuple[int, frozenset[str]]] = []
    for uid in wanted:
        rec = have.get(uid)
        if rec is None:
            continue
        # RFC 7162 §3.1.3: UNCHANGEDSINCE fails for messages modified after it
        if unchanged_since is not None and rec.modseq > unchanged_since:
            failed.append(uid)
            continue
        new = new_flags(mode, rec.flags, flags)
        if new != rec.flags:  # RFC 7162 §3.2: no change, no new modseq
            changes.append((uid, new))
    if not changes:
        return FlagResult([], failed)
    acc, _, modseq = await tx.bump(mailbox_id, 0)  # one modseq for the whole STORE
    await tx.set_flags(mailbox_id, changes, modseq)
    await tx.publish(Change(acc, mailbox_id, ChangeKind.FLAGS, modseq))
    return FlagResult([replace(have[uid], modseq=modseq, flags=new) for uid, new in changes], failed)


async def expunge(
    tx: Tx, mailbox_id: int, uids: Sequence[int], *, locked: bool = False
) -> tuple[list[int], list[str]]:
    """Set-based (one DELETE for all UIDs: a POP3 UPDATE expunges a whole maildrop at once).

    Returns (expunged UIDs in request order, blob keys now unreferenced)."""
    wanted = unique(uids)
    if not wanted:
        return [], []
    if not locked:
        await tx.lock_mailboxes([mailbox_id])
    rows = await tx.delete_messages(mailbox_id, wanted)
    if not rows:
        return [], []
    acc, _, modseq = await tx.bump(mailbox_id, 0)  # RFC 7162 §3.1: the expunge gets a new modseq
    deleted = {uid for uid, _, _ in rows}
    gone = [u for u in wanted if u in deleted]
    # RFC 7162 §3.2.10 (QRESYNC VANISHED): remember each expunged UID with its modseq
    await tx.remember_expunged(mailbox_id, gone, modseq)
    await tx.adjust_usage({acc: (-len(gone), -sum(size for _, _, size in rows))})
    await tx.publish(Change(acc, mailbox_id, ChangeKind.EXPUNGE, modseq))
    return gone, await free_blobs(tx, {key for _, key, _ in rows})


async def copy(
    tx: Tx, src: int, uids: Sequence[int], dst: int, *, locked: bool = False
) -> list[tuple[int, int]]:
    if not locked:
        await tx.lock_mailboxes([src, dst])
    wanted = unique(uids)
    # for_share: a concurrent expunge of the source cannot free the blobs about to be referenced
    have = {r.uid: r for r in await tx.messages(src, wanted, for_share=True)}
    recs = [have[u] for u in wanted if u in have]
    new = await append(
        tx,
        # RFC 9051 §6.4.7: COPY keeps flags and INTERNALDATE (\Recent aside); RFC 8474 §5.1:
        # COPY and MOVE keep the EMAILID
        [NewMessage(dst, r.blob_key, r.size, r.flags, r.internaldate, emailid=r.emailid) for r in recs],
    )
    return [(r.uid, n.uid) for r, n in zip(recs, new, strict=True)]


async def move(tx: Tx, src: int, uids: Sequence[int], dst: int) -> tuple[list[tuple[int, int]], list[str]]:
    await tx.lock_mailboxes([src, dst])
    pairs = await copy(tx, src, uids, dst, locked=True)  # RFC 6851 §3.3: copy and expunge atomically
    _, free = await expunge(tx, src, [p[0] for p in pairs], locked=True)
    return pairs, free


async def claim_recent(tx: Tx, mailbox_id: int, uidvalidity: int, up_to_uid: int) -> int:
    # RFC 3501 §2.3.2: a message is \Recent for exactly one session: the high-water mark of
    # this mailbox incarnation is raised in one atomic statement, so of two concurrent claims
    # exactly one sees each UID above the old value; a new UIDVALIDITY starts from nothing.
    return await tx.raise_recent(mailbox_id, uidvalidity, up_to_uid)


async def recent_claimed(tx: Tx, mailbox_id: int, uidvalidity: int) -> int:
    row = await tx.recent(mailbox_id)
    return row[1] if row is not None and row[0] == uidvalidity else 0


__all__ = [
    "free_blobs",
    "append",
    "claim_recent",
    "copy",
    "create_mailbox",
    "delete_mailbox",
    "deliver_in_tx",
    "expunge",
    "move",
    "recent_claimed",
    "rename_mailbox",
    "set_metadata",
    "set_subscribed",
    "store_flags",
]
