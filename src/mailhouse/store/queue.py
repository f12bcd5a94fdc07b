"""Queue rules (the outbound/inbound mail queue's rows and leases), written once.

RFC 5321 §4.5.4.1 (retry strategy) is the queue runner's (`mailhouse.queue`); the store keeps
the entries and hands out leases.

Invariants:
- `claim_due` leases an entry to at most one claimer at a time: due (``next_attempt <= now``)
  and unleased or with an expired lease (``lease_until < now``: a dead node's claims are taken
  over), oldest first; entries another transaction is claiming are skipped, never waited for.
- `update` persists status, attempts and next attempt and releases the lease.
- `renew` extends every lease OWNER holds in one statement (the runner's heartbeat), never a
  lease another owner took over after it expired.
- `release_previous` frees at once the leases of a restarted node's earlier incarnations:
  owners that start with NODE_PREFIX but not with KEEP_PREFIX (prefix comparison, so node
  ids may contain LIKE wildcards). Owner ids are the runner's (`queue.owner`).
- `remove` frees the entry's blob once nothing else references it (a message delivered from
  the queue may share it).
- `enqueue` with a blob stores it in the same transaction as the row where the backend can.
"""

from __future__ import annotations

from mailhouse.store.api import NotFound, QueueEntry
from mailhouse.store.backend import Tx
from mailhouse.store.mail import free_blobs


async def enqueue(tx: Tx, entry: QueueEntry, blob: bytes | None) -> None:
    if blob is not None:  # the caller chose a key for a blob kept in the database
        await tx.put_blob(entry.blob_key, blob)
    await tx.insert_queue(entry)


async def claim_due(tx: Tx, now: float, owner: str, lease_seconds: float, limit: int) -> list[QueueEntry]:
    due = await tx.due_entries(now, limit)
    until = now + lease_seconds
    if due:
        await tx.lease([e.id for e in due], owner, until)
    for e in due:
        e.lease_owner, e.lease_until = owner, until
    return sorted(due, key=lambda e: (e.next_attempt, e.id))


async def remove(tx: Tx, entry_id: str) -> list[str]:
    key = await tx.delete_queue(entry_id)
    if key is None:
        raise NotFound(f"queue entry {entry_id} does not exist")
    return await free_blobs(tx, [key])


async def renew(tx: Tx, owner: str, until: float) -> int:
    """Heartbeat: extend OWNER's leases to UNTIL (one statement); how many entries it holds."""
    return await tx.renew_leases(owner, until)


async def release_previous(tx: Tx, node_prefix: str, keep_prefix: str) -> int:
    """Release the leases of owners under NODE_PREFIX that are not under KEEP_PREFIX."""
    if not node_prefix or not keep_prefix.startswith(node_prefix):
        raise ValueError("keep_prefix must extend node_prefix")
    return await tx.release_leases(node_prefix, keep_prefix)
