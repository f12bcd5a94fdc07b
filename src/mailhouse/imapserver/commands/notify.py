"""NOTIFY (RFC 5465): ``NOTIFY SET [STATUS] (filter events) ...`` and ``NOTIFY NONE``.

RFCs: RFC 5465 §3 (the command; ``NO [BADEVENT]``, STATUS), §5 (for the selected mailbox
MessageNew and MessageExpunge go together and FlagChange needs both; elsewhere any one event), §6.1 (SELECTED / SELECTED-DELAYED: one, message events only),
§8 (the MessageNew fetch-att list only for the selected mailbox).

This module only validates the request and installs the :class:`~..updates.NotifyState` (with
snapshots of names, subscriptions and metadata to diff later) and a change-feed listener;
what is then sent, and when, is ``updates.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap.commands import MailboxFilterKind, Notify

from ..context import Ok
from ..errors import Bad, No
from ..fetch_items import UNSUPPORTED
from ..notify_state import EVENTS, MESSAGE_EVENTS, SELECTED_KINDS, NotifyState, wanted
from ..status import status_line
from ..updates import metadata_snapshot, stop

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


async def cmd_notify(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Notify)
    if args.none:
        stop(s)
        return Ok("NOTIFY completed")
    st = NotifyState()
    seen_selected = False
    for g in args.groups:
        names = frozenset(e.name for e in g.events)
        bad = sorted(names - EVENTS)
        if bad:
            # RFC 5465 §3.1: unsupported event → NO [BADEVENT (supported)]
            raise No(f"Unsupported event {bad[0]}", "BADEVENT (" + " ".join(sorted(EVENTS)) + ")")
        atts = tuple(a for e in g.events for a in e.fetch_atts)
        if g.filter.kind in SELECTED_KINDS:
            # RFC 5465 §5: for the selected mailbox MessageNew and MessageExpunge go together
            # (its message sequence numbers must stay in step) and FlagChange needs both. For
            # other mailboxes each event alone is valid (they are reported as STATUS), e.g.
            # (MAILBOXES x (MessageExpunge)) — as Dovecot accepts.
            if ("MessageNew" in names) != ("MessageExpunge" in names):
                raise Bad("MessageNew and MessageExpunge must be specified together for SELECTED")
            if "FlagChange" in names and "MessageNew" not in names:
                raise Bad("FlagChange requires MessageNew and MessageExpunge for SELECTED")
            if seen_selected:  # RFC 5465 §6.1: only one of SELECTED / SELECTED-DELAYED
                raise Bad("Only one SELECTED or SELECTED-DELAYED filter")
            seen_selected = True
            if names - MESSAGE_EVENTS:  # RFC 5465 §6.1: only message events for the selected mailbox
                raise Bad("Only message events apply to SELECTED")
            for a in atts:
                if a.name in UNSUPPORTED:
                    raise Bad(f"FETCH {a.name} is not supported")
            st.selected = names
            st.selected_delayed = g.filter.kind is MailboxFilterKind.SELECTED_DELAYED
            st.fetch_atts = atts
        else:
            if atts:  # RFC 5465 §8: the fetch-att list only with SELECTED/SELECTED-DELAYED
                raise Bad("A MessageNew fetch-att list is only allowed for SELECTED")
            st.groups.append((g.filter, names))
    acc = s.acc().id
    mbs = await s.store.list_mailboxes(acc)
    st.names = {m.id: m.name for m in mbs}
    st.subs = set(await s.store.subscriptions(acc))
    st.meta = await metadata_snapshot(s, st, mbs)
    stop(s)
    s.notify = st
    s._notify_listener = s.node.hub.listen(acc)
    if args.status:  # RFC 5465 §3.1: STATUS now for every mailbox with message events
        for m in mbs:
            if s.selected is not None and m.id == s.selected.mailbox.id:
                continue
            want = wanted(st, m.name)
            if not want & MESSAGE_EVENTS:
                continue
            items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
            if "FlagChange" in want:  # the client's base to judge later FlagChange STATUS by
                items.append("HIGHESTMODSEQ")  # (sent with or without ENABLE, as Dovecot does)
            s.send(await status_line(s, m, tuple(items)))
    return None
