"""STORE and UID STORE: flag changes.

RFCs: RFC 9051 §6.4.6 (STORE, ``+FLAGS``/``-FLAGS``, .SILENT), §2.3.2 (``\\Recent`` can never be
stored); RFC 7162 §3.1.3 (UNCHANGEDSINCE → ``[MODIFIED set]``, MODSEQ in the FETCH responses
even with .SILENT; UNCHANGEDSINCE enables CONDSTORE), §3.2.4 (UID with QRESYNC); RFC 9051
§7.3.5 (a keyword new to the mailbox is announced in FLAGS / PERMANENTFLAGS before the FETCH
responses that carry it, ``SelectedMailbox.announce``).

Invariants: a read-only (EXAMINE) view changes nothing; the store call is the commit point —
the FETCH responses describe committed state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Store
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import FlagMode

from .. import namespaces
from ..context import Ok

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext

_MODES = {"": FlagMode.REPLACE, "+": FlagMode.ADD, "-": FlagMode.REMOVE}


async def cmd_store(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Store)
    view = s.selected
    assert view is not None
    view.check_writable()
    uids = [u for u in view.resolve(args.sequence, args.uid) if u not in view.pending_expunge]
    flags = frozenset(f for f in args.flags if f.upper() != "\\RECENT")
    if args.unchangedsince is not None and not s.condstore:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: UNCHANGEDSINCE enables CONDSTORE
        s.send(view.enable_condstore())
    # namespaces.store_flags: \Seen per reader on another account's mailbox (issue 13 §3)
    res = await namespaces.store_flags(s, view, uids, _MODES[args.mode.value], flags, args.unchangedsince)
    updated = {r.uid for r in res.updated}
    for rec in res.updated:
        view.set_record(rec)
    s.send(view.announce())  # RFC 9051 §7.3.5: a new keyword is in FLAGS before the FETCH shows it
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
        return Ok("Conditional STORE failed", f"MODIFIED {SequenceSet.from_numbers(nums)}")  # RFC 7162 §3.1.3
    return None
