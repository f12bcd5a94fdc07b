"""COPY and MOVE (and UID COPY, UID MOVE).

RFCs: RFC 9051 §6.4.7 (COPY, ``[TRYCREATE]``), §6.4.8 (MOVE); RFC 4315 §3 (UIDPLUS: COPYUID);
RFC 6851 §4.3 (MOVE: untagged ``OK [COPYUID]`` then EXPUNGE/VANISHED, then the tagged OK);
RFC 5267 §4.3.4 (REMOVEFROM before the EXPUNGE); RFC 5465 §5.2 (no MessageNew FETCH for what
this connection created); RFC 9208 §5.1 (``[OVERQUOTA]``); RFC 5530 (EXPUNGEISSUED).

Invariants: MOVE out of a read-only (EXAMINE) view is refused; the quota is checked before the
store call, which is the commit point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import CopyMove
from mailhouse.proto.imap.sequence import SequenceSet

from .. import namespaces
from ..context import Ok
from ..quota import check_quota
from ..updates import before_expunge, note_own

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mailhouse.proto.imap import Command

    from ..context import SessionContext
    from ..namespaces import Resolved


async def _target(s: SessionContext, name: str) -> Resolved:
    return await namespaces.target(s, name)  # RFC 4314 §4: i; RFC 9051 §6.4.7


def _reader(s: SessionContext, key: str) -> Callable[[int], Awaitable[bytes | None]]:
    async def read(limit: int) -> bytes | None:
        return await s.store.blobs.read_range(key, 0, limit)

    return read


async def _copy_or_move(s: SessionContext, cmd: Command, move: bool) -> Ok | None:
    args = cmd.args
    assert isinstance(args, CopyMove)
    view = s.selected
    assert view is not None
    if move:
        view.check_writable()
    uids = [u for u in view.resolve(args.sequence, args.uid) if u not in view.pending_expunge]
    target = await _target(s, args.mailbox)
    dst = target.mailbox
    if not uids:
        return Ok(f"{cmd.name} completed, no messages")
    if dst.id != view.mailbox.id or not move:
        await check_quota(s.store, dst.account_id, sum(view.records[u].size for u in uids), len(uids))
    blobs = {u: view.records[u].blob_key for u in uids}  # read before MOVE expunges them from the view
    if move:
        pairs = await s.store.move(view.mailbox.id, uids, dst.id)
    else:
        pairs = await s.store.copy(view.mailbox.id, uids, dst.id)
    if not pairs:
        return Ok("Messages were expunged by another session", "EXPUNGEISSUED")
    await namespaces.drop_flags(s, target, view, pairs)  # RFC 4314 §4: flags need s/w/t in the target
    note_own(s, dst.id, [p[1] for p in pairs])  # RFC 5465 §5.2: created by this connection
    # issue 14 §3: into \Junk trains spam, out of \Junk trains ham (after the commit point)
    await s.svc.learning.moved(
        s.acc().id, [_reader(s, blobs[p[0]]) for p in pairs], view.mailbox.special_use, dst.special_use
    )
    src_set = SequenceSet.from_numbers(p[0] for p in pairs)
    dst_set = SequenceSet.from_numbers(p[1] for p in pairs)
    code = f"COPYUID {dst.uidvalidity} {src_set} {dst_set}"  # RFC 4315 §3
    if not move:
        return Ok("COPY completed", code)
    # RFC 6851 §4.3: untagged OK [COPYUID] first, then EXPUNGE (or VANISHED), then tagged OK
    s.send(response.untagged_status("OK", "Moved", code))
    before_expunge(s, [p[0] for p in pairs])  # RFC 5267 §4.3.4
    s.send(view.expunge_responses([p[0] for p in pairs]))
    return Ok("MOVE completed")


async def cmd_copy(s: SessionContext, cmd: Command) -> Ok | None:
    return await _copy_or_move(s, cmd, move=False)


async def cmd_move(s: SessionContext, cmd: Command) -> Ok | None:
    return await _copy_or_move(s, cmd, move=True)
