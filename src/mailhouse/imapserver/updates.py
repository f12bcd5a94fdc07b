"""Unsolicited responses: selected-mailbox updates, live SEARCH/SORT contexts and NOTIFY delivery.

The session calls :func:`report` after each command (``IMAPSession.sync``) and
:func:`deliver` when the change feed wakes it (no command in progress, or IDLE); COPY, MOVE,
EXPUNGE call :func:`before_expunge`, APPEND/COPY/MOVE :func:`note_own`. The NOTIFY command
itself (``commands/notify.py``) only parses the request into a :class:`NotifyState`.

RFCs: RFC 9051 §7 / RFC 3501 §7.4.1 (when updates may be sent), RFC 5267 §4.3.4 (REMOVEFROM
before EXPUNGE, ADDTO after EXISTS), RFC 5465 §5 (NOTIFY events), RFC 7162 §3.2.4 (UID in
every unsolicited FETCH with QRESYNC).

What is sent (RFC 5465 §5), while no command is in progress or during IDLE:

* selected mailbox: EXISTS / EXPUNGE (VANISHED) / FETCH (UID FLAGS) (§5.1) as after a command, the
  RFC 5267 ADDTO/REMOVEFROM of live contexts, then (MessageNew with fetch-atts, §5.2) one
  ``* n FETCH (...)`` per new message, after the ESEARCH ADDTO; not for messages this
  connection created itself (APPEND, COPY, MOVE into the selected mailbox). Expunges are
  pushed at once with SELECTED and only at the next command / IDLE with SELECTED-DELAYED;
* other mailboxes: ``* STATUS`` with MESSAGES UIDNEXT UNSEEN (MessageNew, MessageExpunge;
  HIGHESTMODSEQ with CONDSTORE) or UNSEEN (FlagChange; with CONDSTORE HIGHESTMODSEQ and
  UIDVALIDITY);
* MailboxName: ``* LIST () "/" name``, ``(\\NonExistent)`` for a deleted one, ``OLDNAME``
  for a renamed one (§5.4);
* SubscriptionChange: ``* LIST (\\Subscribed) "/" name`` or ``* LIST () "/" name`` (§5.5);
* Mailbox/ServerMetadataChange: ``* METADATA "mailbox" entry ...`` naming the entries whose
  value changed, appeared or were removed (§5.6-7, RFC 5464 §4.4.2).

Sources: the store's change feed (``changes.ChangeHub``), so changes made by other
sessions, other worker processes, other nodes and SMTP delivery are all reported; snapshots
(mailbox names, subscriptions, metadata values) are diffed to say what changed. Changes made
by this connection itself are reported like any other, except the MessageNew FETCH (the
RFC's "SHOULD omit" is followed only there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import FetchAtt
from mailhouse.store.api import ChangeKind, Mailbox

from . import contexts, metadata
from .fetch_items import CONTENT_ITEMS, message_items
from .fetch_stream import send_fetch
from .notify_state import MAX_OWN, NotifyState, wanted
from .selected import SelectedMailbox
from .status import status_line

if TYPE_CHECKING:
    from .changes import Listener
    from .context import SessionContext


def stop(s: SessionContext) -> None:
    """End NOTIFY (NOTIFY NONE, a new NOTIFY SET, UNAUTHENTICATE, disconnect)."""
    if s._notify_listener is not None:
        s.node.hub.unlisten(s._notify_listener)
    s._notify_listener = None
    s.notify = None


def note_own(s: SessionContext, mailbox_id: int, uids: list[int]) -> None:
    """This connection created ``uids`` in ``mailbox_id`` (APPEND, COPY, MOVE): no MessageNew
    FETCH for them (RFC 5465 §5.2 "SHOULD NOT")."""
    st = s.notify
    if st is None or s.selected is None or s.selected.mailbox.id != mailbox_id or not st.fetch_atts:
        return
    if len(st.own) + len(uids) <= MAX_OWN:
        st.own.update(uids)


async def metadata_snapshot(
    s: SessionContext, st: NotifyState, mbs: list[Mailbox]
) -> dict[str, dict[str, str]]:
    acc = s.acc().id
    out: dict[str, dict[str, str]] = {}
    if st.wants("ServerMetadataChange"):
        out[metadata.mailbox_scope(None)] = await metadata.entries(s.store, acc, metadata.mailbox_scope(None))
    if st.wants("MailboxMetadataChange"):
        for m in mbs:
            if "MailboxMetadataChange" in wanted(st, m.name):
                scope = metadata.mailbox_scope(m)
                out[scope] = await metadata.entries(s.store, acc, scope)
    return out


# ---------------------------------------------------------------------------- selected mailbox


async def after_update(s: SessionContext) -> None:
    """RFC 5267 §4.3: ADDTO/REMOVEFROM for live contexts after the view reported changes."""
    view = s.selected
    if view is None or not view.search_contexts:
        return
    s.send(await contexts.refresh(view, s.node.messages))


def before_expunge(s: SessionContext, uids: set[int] | list[int]) -> None:
    """RFC 5267 §4.3.4: REMOVEFROM for expunged results goes out before their EXPUNGE."""
    view = s.selected
    if view is not None and view.search_contexts and uids:
        s.send(contexts.before_expunge(view, uids))


async def report(s: SessionContext, view: SelectedMailbox, *, allow_expunge: bool) -> None:
    """Queue the selected mailbox's pending updates in RFC order: REMOVEFROM before the
    EXPUNGEs they follow from (RFC 5267 §4.3.4), EXPUNGE/EXISTS/FETCH FLAGS, ADDTO after
    EXISTS, then the MessageNew FETCHes of NOTIFY (RFC 5465 §5.2)."""
    st = s.notify
    s.send(view.announce())  # RFC 9051 §7.3.5: new keywords in FLAGS before any FETCH uses them
    if st is not None and "FlagChange" in st.selected and view.pending_flags:
        # RFC 5465 §5.1: the unsolicited FETCH carries UID and FLAGS (numbers valid now: any
        # EXPUNGE follows)
        for uid in sorted(view.pending_flags - view.pending_expunge):
            seq = view.seq_of(uid)
            if seq is not None:
                s.send(view.flags_fetch(seq, uid, with_uid=True))
        view.pending_flags.clear()
    if allow_expunge:
        before_expunge(s, view.pending_expunge)
    new = list(view.pending_new)
    s.send(await view.updates(s.node.claims, allow_expunge=allow_expunge))
    await after_update(s)
    if st is not None and st.fetch_atts and "MessageNew" in st.selected and new:
        await _new_message_fetches(s, view, st, new)


async def _new_message_fetches(
    s: SessionContext, view: SelectedMailbox, st: NotifyState, new: list[int]
) -> None:
    atts = list(st.fetch_atts)
    if s.qresync and not any(a.name == "UID" for a in atts):
        atts.insert(0, FetchAtt("UID"))  # RFC 7162 §3.2.4: UID in every unsolicited FETCH
    content = any(a.name in CONTENT_ITEMS for a in atts)
    for uid in sorted(new):
        if uid in st.own:
            st.own.discard(uid)
            continue
        rec = view.records.get(uid)
        seq = view.seq_of(uid)
        if rec is None or seq is None:
            continue
        # BODY[...] is answered like BODY.PEEK[...]: a notification never sets \Seen
        out = await message_items(s, view, rec, atts, content=content)
        if out is None:
            continue  # expunged meanwhile: its EXPUNGE follows
        await send_fetch(s, seq, out)


# ---------------------------------------------------------------------------- delivery


async def deliver(s: SessionContext, lst: Listener, *, in_command: bool) -> None:
    """Turn change-feed wake-ups into untagged responses (RFC 5465 §5)."""
    st = s.notify
    changes, overflow = lst.drain()
    if st is None:
        return
    # the PostgreSQL feed's "changes may have been missed" marker (mailbox 0) means re-read all
    overflow = overflow or any(c.kind is ChangeKind.MAILBOX and c.mailbox_id == 0 for c in changes)
    view = s.selected
    kinds: dict[int, set[ChangeKind]] = {}
    for c in changes:
        kinds.setdefault(c.mailbox_id, set()).add(c.kind)
    all_kinds = {k for ks in kinds.values() for k in ks}
    if view is not None and st.selected and (overflow or view.mailbox.id in kinds):
        # RFC 5465 §6.1.1: with SELECTED (not -DELAYED) expunges may be sent at any time
        allow = in_command or not st.selected_delayed
        await view.refresh()
        if view.deleted:
            s.send(response.untagged_status("BYE", "Selected mailbox was deleted"))
            s.closing = True
            return
        await report(s, view, allow_expunge=allow)
    if not st.groups:
        return
    acc = s.acc().id
    mbs: list[Mailbox] | None = None
    if overflow or ChangeKind.MAILBOX in all_kinds:
        mbs = await s.store.list_mailboxes(acc)
        _mailbox_names(s, st, {m.id: m.name for m in mbs})
    if overflow or ChangeKind.SUBSCRIPTION in all_kinds:
        subs = set(await s.store.subscriptions(acc))
        if mbs is None:
            mbs = await s.store.list_mailboxes(acc)
        _subscriptions(s, st, subs, {m.name for m in mbs})
    if (overflow or ChangeKind.METADATA in all_kinds or ChangeKind.MAILBOX in all_kinds) and (
        st.wants("MailboxMetadataChange") or st.wants("ServerMetadataChange")
    ):
        if mbs is None:
            mbs = await s.store.list_mailboxes(acc)
        await _metadata(s, st, mbs, report_changes=overflow or ChangeKind.METADATA in all_kinds)
    for mid, ks in kinds.items():
        if view is not None and mid == view.mailbox.id:
            continue  # RFC 5465 §3.1: SELECTED decides for the selected mailbox
        name = st.names.get(mid)
        if name is None or not ks & {ChangeKind.APPEND, ChangeKind.EXPUNGE, ChangeKind.FLAGS}:
            continue
        want = wanted(st, name)
        items: list[str] = []
        if (ChangeKind.APPEND in ks and "MessageNew" in want) or (
            ChangeKind.EXPUNGE in ks and "MessageExpunge" in want
        ):
            items = ["MESSAGES", "UIDNEXT", "UNSEEN"]  # RFC 5465 §5.2-3
            if s.condstore:
                items.append("HIGHESTMODSEQ")
        if ChangeKind.FLAGS in ks and "FlagChange" in want:  # RFC 5465 §5.1
            items = items or ["UNSEEN"]
            if s.condstore:
                items += [i for i in ("HIGHESTMODSEQ", "UIDVALIDITY") if i not in items]
        if items:
            mb = await s.store.get_mailbox_by_id(mid)
            if mb is not None:
                s.send(await status_line(s, mb, tuple(items)))


def _mailbox_names(s: SessionContext, st: NotifyState, now: dict[int, str]) -> None:
    """RFC 5465 §5.4: LIST for created and renamed (OLDNAME) mailboxes, \\NonExistent for
    deleted ones; children renamed along with their parent are not reported separately."""
    renames = [(old, now[mid]) for mid, old in st.names.items() if mid in now and now[mid] != old]
    for mid, name in now.items():
        old = st.names.get(mid)
        if old == name or "MailboxName" not in wanted(st, name):
            continue
        if old is not None and any(
            old.startswith(po + "/") and name == pn + old[len(po) :] for po, pn in renames if po != old
        ):
            continue  # a child renamed with its parent
        ext: list[tuple[str, response.Value]] = []
        if old is not None:
            ext.append(("OLDNAME", [response.MailboxName(old)]))
        s.send(response.list_response([], "/", name, utf8=s.utf8, extended=ext))
    for mid, name in st.names.items():
        if mid not in now and "MailboxName" in wanted(st, name):
            s.send(response.list_response(["\\NonExistent"], "/", name, utf8=s.utf8))
    st.names = now


def _subscriptions(s: SessionContext, st: NotifyState, subs: set[str], existing: set[str]) -> None:
    """RFC 5465 §5.5: LIST with \\Subscribed if and only if subscribed after the event."""
    union = subs | st.subs
    for name in sorted(subs ^ st.subs):
        if "SubscriptionChange" not in wanted(st, name, union):
            continue
        attrs = ["\\Subscribed"] if name in subs else []
        if name not in existing:
            attrs.append("\\NonExistent")
        s.send(response.list_response(attrs, "/", name, utf8=s.utf8))
    st.subs = subs


async def _metadata(s: SessionContext, st: NotifyState, mbs: list[Mailbox], *, report_changes: bool) -> None:
    """RFC 5465 §5.6-7: ``* METADATA mailbox entry ...`` for entries set, changed or removed."""
    now = await metadata_snapshot(s, st, mbs)
    by_scope = {metadata.mailbox_scope(m): m.name for m in mbs}
    if report_changes:
        for scope, entries in now.items():
            before = st.meta.get(scope)
            if before is None:
                continue  # a mailbox that just came into view: nothing to compare with
            changed = sorted(e for e in set(entries) | set(before) if entries.get(e) != before.get(e))
            if not changed:
                continue
            name = "" if scope == metadata.mailbox_scope(None) else by_scope.get(scope)
            if name is None:
                continue
            s.send(
                b"* METADATA "
                + response.mailbox(name, utf8=s.utf8)
                + b" "
                + b" ".join(response.encode_value(response.AString(e), utf8=s.utf8) for e in changed)
                + b"\r\n"
            )
    st.meta = now
