"""STORE, COPY, MOVE and EXPUNGE (and their UID forms).

RFCs: RFC 9051 §6.4.3 (EXPUNGE), §6.4.6 (STORE, .SILENT), §6.4.7 (COPY), §6.4.8 (MOVE),
§6.4.9 (UID EXPUNGE); RFC 4315 (UIDPLUS: COPYUID, UID EXPUNGE); RFC 6851 (MOVE: untagged
``OK [COPYUID]`` then EXPUNGE/VANISHED); RFC 7162 §3.1.3 (UNCHANGEDSINCE → ``[MODIFIED set]``,
MODSEQ in FETCH responses), §3.2.10 (VANISHED instead of EXPUNGE); RFC 9208 / RFC 5530
(``[OVERQUOTA]``, ``[TRYCREATE]``, ``[READ-ONLY]`` style refusals).

Invariants: a read-only (EXAMINE) view changes nothing; ``\\Recent`` can never be stored
(RFC 9051 §2.3.2); the store call is the commit point — responses describe committed state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import CopyMove, Expunge, Store
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import FlagMode

from . import extensions, notify
from .errors import No

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command
    from mailhouse.store.api import Mailbox

    from .session import IMAPSession, Ok

_MODES = {"": FlagMode.REPLACE, "+": FlagMode.ADD, "-": FlagMode.REMOVE}


def _writable(s: IMAPSession) -> None:
    assert s.selected is not None
    if s.selected.readonly:
        raise No("Mailbox is read-only (EXAMINE)", "CANNOT")


async def cmd_store(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Store)
    view = s.selected
    assert view is not None
    _writable(s)
    uids = [u for u in view.resolve(args.sequence, args.uid) if u not in view.pending_expunge]
    flags = frozenset(f for f in args.flags if f.upper() != "\\RECENT")
    if args.unchangedsince is not None and not s.condstore:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: UNCHANGEDSINCE enables CONDSTORE
        view.condstore = True
    res = await s.store.store_flags(
        view.mailbox.id, uids, _MODES[args.mode.value], flags, args.unchangedsince
    )
    updated = {r.uid for r in res.updated}
    for rec in res.updated:
        view.set_record(rec)
    failed = set(res.failed_uids)
    for uid in uids:
        if uid in failed or uid not in view.records:
            continue
        seq = view.seq_of(uid)
        if seq is None:
            continue
        items: list[tuple[str, response.Value]] = []
        if args.uid or s.qresync:
            items.append(("UID", uid))
        if not args.silent:
            items.append(("FLAGS", view.flags_of(uid)))
        if view.condstore and (uid in updated or not args.silent):
            # RFC 7162 §3.1.3: MODSEQ in the FETCH responses, even with .SILENT
            items.append(("MODSEQ", [view.records[uid].modseq]))
        if any(k in ("FLAGS", "MODSEQ") for k, _ in items):
            s.send(response.fetch(seq, items))
            await s.maybe_flush()
    if failed:
        nums = sorted(failed) if args.uid else sorted(x for u in failed if (x := view.seq_of(u)) is not None)
        from .session import Ok

        return Ok("Conditional STORE failed", f"MODIFIED {SequenceSet.from_numbers(nums)}")  # RFC 7162 §3.1.3
    return None


async def _target(s: IMAPSession, name: str) -> Mailbox:
    from .mailboxes import check_name

    mb = await s.store.get_mailbox(s.acc().id, check_name(name))
    if mb is None:
        raise No("Target mailbox does not exist", "TRYCREATE")  # RFC 9051 §6.4.7
    return mb


async def check_quota(s: IMAPSession, add_bytes: int, add_messages: int) -> None:
    """RFC 9208 §5.1: refuse with ``NO [OVERQUOTA]`` when the account limits would be exceeded."""
    acc = await s.store.get_account_by_id(s.acc().id)
    if acc is None or (not acc.quota_bytes and not acc.quota_messages):
        return
    use = await s.store.usage(acc.id)
    if acc.quota_bytes and use.bytes + add_bytes > acc.quota_bytes:
        raise No("Quota exceeded (storage)", "OVERQUOTA")
    if acc.quota_messages and use.messages + add_messages > acc.quota_messages:
        raise No("Quota exceeded (messages)", "OVERQUOTA")


async def _copy_or_move(s: IMAPSession, cmd: Command, move: bool) -> Ok | None:
    from .session import Ok

    args = cmd.args
    assert isinstance(args, CopyMove)
    view = s.selected
    assert view is not None
    if move:
        _writable(s)
    uids = [u for u in view.resolve(args.sequence, args.uid) if u not in view.pending_expunge]
    dst = await _target(s, args.mailbox)
    if not uids:
        return Ok(f"{cmd.name} completed, no messages")
    if dst.id != view.mailbox.id or not move:
        await check_quota(s, sum(view.records[u].size for u in uids), len(uids))
    if move:
        pairs = await s.store.move(view.mailbox.id, uids, dst.id)
    else:
        pairs = await s.store.copy(view.mailbox.id, uids, dst.id)
    if not pairs:
        return Ok("Messages were expunged by another session", "EXPUNGEISSUED")
    notify.note_own(s, dst.id, [p[1] for p in pairs])  # RFC 5465 §5.2: created by this connection
    src_set = SequenceSet.from_numbers(p[0] for p in pairs)
    dst_set = SequenceSet.from_numbers(p[1] for p in pairs)
    code = f"COPYUID {dst.uidvalidity} {src_set} {dst_set}"  # RFC 4315 §3
    if not move:
        return Ok("COPY completed", code)
    # RFC 6851 §4.3: untagged OK [COPYUID] first, then EXPUNGE (or VANISHED), then tagged OK
    s.send(response.untagged_status("OK", "Moved", code))
    extensions.before_expunge(s, [p[0] for p in pairs])  # RFC 5267 §4.3.4
    s.send(view.expunge_responses([p[0] for p in pairs]))
    return Ok("MOVE completed")


async def cmd_copy(s: IMAPSession, cmd: Command) -> Ok | None:
    return await _copy_or_move(s, cmd, move=False)


async def cmd_move(s: IMAPSession, cmd: Command) -> Ok | None:
    return await _copy_or_move(s, cmd, move=True)


async def cmd_expunge(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    view = s.selected
    assert view is not None
    _writable(s)
    await view.refresh()  # \Deleted set by other sessions counts too
    candidates = view.uids
    if isinstance(args, Expunge) and args.uid_set is not None:  # RFC 4315 §2.1 UID EXPUNGE
        candidates = view.resolve(args.uid_set, True)
    uids = [u for u in candidates if u in view.records and "\\Deleted" in view.records[u].flags]
    if uids:
        gone, _ = await s.store.expunge(view.mailbox.id, uids)
        extensions.before_expunge(s, gone)  # RFC 5267 §4.3.4: REMOVEFROM first
        s.send(view.expunge_responses(gone))
    return None
