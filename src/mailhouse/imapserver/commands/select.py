"""Opening and closing the selected mailbox: SELECT, EXAMINE, CLOSE, UNSELECT, CHECK.

RFCs: RFC 9051 §6.3.2-3 (SELECT/EXAMINE responses; rev2 sends the LIST line, no RECENT/UNSEEN),
§6.4.1 (CLOSE expunges silently unless read-only), §7.1 (READ-ONLY / READ-WRITE, UIDVALIDITY,
UIDNEXT, PERMANENTFLAGS); RFC 3501 §6.3.1 (rev1 RECENT, UNSEEN), §6.4.1 (CHECK); RFC 3691
(UNSELECT: no expunge); RFC 7162 §3.1.2.1 (HIGHESTMODSEQ), §3.1.8 (SELECT (CONDSTORE)),
§3.2.5 (SELECT (QRESYNC ...): VANISHED (EARLIER) and FETCH of what changed), §3.2.11
(``OK [CLOSED]`` when a mailbox was already selected).

Invariant: the previous view is dropped before the new one is opened, so a failing SELECT
leaves the session in the authenticated state (RFC 9051 §6.3.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.message.objectid import mailboxid
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Select
from mailhouse.proto.imap.sequence import SequenceSet

from .. import namespaces
from ..context import Ok, State
from ..errors import Bad
from ..mailbox_names import resolve_existing
from ..selected import SelectedMailbox

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


async def cmd_select(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Select)
    previous = s.selected
    if s.selected is not None:
        s.selected = None
        s.state = State.AUTHENTICATED
        s.send(response.untagged_status("OK", "Previous mailbox closed", "CLOSED"))  # RFC 7162 §3.2.11
    if args.qresync is not None and not s.qresync:
        raise Bad("QRESYNC not enabled")  # RFC 7162 §3.2.5
    if args.condstore:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1.8: SELECT (CONDSTORE) enables it
    res = await resolve_existing(s, args.mailbox, "r")  # RFC 4314 §4: SELECT/EXAMINE need r
    mb = res.mailbox
    readonly = args.readonly or not any(r in res.rights for r in "swite")  # RFC 4314 §4: READ-ONLY
    view = await SelectedMailbox.open(
        s.store,
        mb,
        s.node.claims,
        readonly=readonly,
        rev2=s.rev2,
        condstore=s.condstore,
        qresync=s.qresync,
        registry=s.node.index,
        previous=previous,
    )
    await namespaces.overlay_seen(s, view)  # \Seen is per reader on another account's mailbox
    mb = view.mailbox
    flags: list[response.Value] = [
        response.Atom(f) for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
    ]
    perm = view.permanent_flags()
    s.send(response.untagged("FLAGS", flags + perm[5:]))
    s.send(response.exists(view.exists))
    if not s.rev2:
        s.send(response.recent(len(view.recent)))
        unseen = next((i + 1 for i, u in enumerate(view.uids) if "\\Seen" not in view.records[u].flags), None)
        if unseen is not None:
            s.send(response.untagged_status("OK", "First unseen", f"UNSEEN {unseen}"))
    s.send(response.untagged_status("OK", "UIDs valid", f"UIDVALIDITY {mb.uidvalidity}"))
    s.send(response.untagged_status("OK", "Predicted next UID", f"UIDNEXT {mb.uidnext}"))
    if readonly:
        s.send(response.untagged_status("OK", "No permanent flags permitted", "PERMANENTFLAGS ()"))
    else:
        codes = " ".join(a.value for a in perm if isinstance(a, response.Atom))
        s.send(response.untagged_status("OK", "Flags permitted", f"PERMANENTFLAGS ({codes} \\*)"))
    # RFC 7162 §3.1.2.1: HIGHESTMODSEQ with every SELECT/EXAMINE
    s.send(response.untagged_status("OK", "Highest", f"HIGHESTMODSEQ {view.known_modseq}"))
    s.send(
        response.untagged_status("OK", "Ok", f"MAILBOXID ({mailboxid(mb.id, mb.uidvalidity)})")
    )  # RFC 8474 §4.3
    if s.rev2:  # RFC 9051 §6.3.2: the mailbox name as the server knows it
        s.send(response.list_response(["\\HasNoChildren"], "/", res.name, utf8=s.utf8))
    if args.qresync is not None and args.qresync.uidvalidity == mb.uidvalidity:
        await _qresync_select(s, view, args)
    s.selected = view
    s.state = State.SELECTED
    return Ok(f"{cmd.name} completed", "READ-ONLY" if readonly else "READ-WRITE")


async def _qresync_select(s: SessionContext, view: SelectedMailbox, args: Select) -> None:
    """RFC 7162 §3.2.5.2: VANISHED (EARLIER) and FETCH for what changed since ``modseq``."""
    q = args.qresync
    assert q is not None
    gone = await s.store.expunged_since(view.mailbox.id, q.modseq)
    if q.known_uids is not None and gone:
        top = max(max(gone), view.uids[-1] if view.uids else 0)
        gone = [u for u in gone if q.known_uids.contains(u, top)]
    if gone:
        s.send(response.vanished(SequenceSet.from_numbers(gone), earlier=True))
    for uid in view.uids:
        rec = view.records[uid]
        if rec.modseq > q.modseq:
            if q.known_uids is not None and not q.known_uids.contains(uid, view.uids[-1]):
                continue
            seq = view.seq_of(uid)
            assert seq is not None
            s.send(view.flags_fetch(seq, uid, with_uid=True))


async def cmd_close(s: SessionContext, cmd: Command) -> Ok | None:
    view = s.selected
    assert view is not None
    s.selected = None
    s.state = State.AUTHENTICATED
    # RFC 9051 §6.4.1: silently expunge \Deleted, no responses; RFC 4314 §4: only with e
    if not view.readonly and "e" in await namespaces.rights_on(s, view.mailbox):
        uids = [u for u in view.uids if "\\Deleted" in view.records[u].flags]
        if uids:
            await s.store.expunge(view.mailbox.id, uids)
    return None


async def cmd_unselect(s: SessionContext, cmd: Command) -> Ok | None:
    s.selected = None  # RFC 3691: no expunge
    s.state = State.AUTHENTICATED
    return None


async def cmd_check(s: SessionContext, cmd: Command) -> Ok | None:
    return None  # RFC 3501 §6.4.1: every change is already durable
