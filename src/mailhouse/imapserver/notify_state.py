"""What a NOTIFY request asked for (RFC 5465) and the snapshots its events are diffed against.

RFCs: RFC 5465 §5 (events: MessageNew, MessageExpunge, FlagChange, MailboxName,
SubscriptionChange, MailboxMetadataChange, ServerMetadataChange), §6 (filters: SELECTED,
SELECTED-DELAYED, INBOXES = INBOX here, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES).

Plain data and pure functions: the NOTIFY command (``commands/notify.py``) fills a
:class:`NotifyState`, ``updates.py`` reads it to decide what to send; the session holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhouse.proto.imap.commands import FetchAtt, MailboxFilter, MailboxFilterKind

MESSAGE_EVENTS = frozenset(("MessageNew", "MessageExpunge", "FlagChange"))
EVENTS = MESSAGE_EVENTS | {
    "MailboxName",
    "SubscriptionChange",
    "MailboxMetadataChange",
    "ServerMetadataChange",
}
SELECTED_KINDS = (MailboxFilterKind.SELECTED, MailboxFilterKind.SELECTED_DELAYED)
MAX_OWN = 10_000  # limit: remembered UIDs this connection created (MessageNew FETCH omission)


@dataclass
class NotifyState:
    """RFC 5465: what the client asked to hear about, and the snapshots events are diffed to."""

    selected: frozenset[str] = frozenset()
    selected_delayed: bool = False
    fetch_atts: tuple[FetchAtt, ...] = ()  # MessageNew fetch-att list (selected mailbox)
    groups: list[tuple[MailboxFilter, frozenset[str]]] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # mailbox id → name (MailboxName diffs)
    subs: set[str] = field(default_factory=set)  # subscriptions (SubscriptionChange diffs)
    meta: dict[str, dict[str, str]] = field(default_factory=dict)  # scope → entry → value
    own: set[int] = field(default_factory=set)  # UIDs this connection put in the selected mailbox

    def wants(self, event: str) -> bool:
        return any(event in ev for _, ev in self.groups)


def _filter_match(f: MailboxFilter, name: str, subs: set[str]) -> bool:
    k = f.kind
    if k is MailboxFilterKind.PERSONAL:
        return True
    if k is MailboxFilterKind.INBOXES:
        return name == "INBOX"
    if k is MailboxFilterKind.SUBSCRIBED:
        return name in subs
    if k is MailboxFilterKind.MAILBOXES:
        return name in f.mailboxes
    if k in (MailboxFilterKind.SUBTREE, MailboxFilterKind.SUBTREE_ONE):
        return any(name == m or name.startswith(m + "/") for m in f.mailboxes)
    return False


def wanted(st: NotifyState, name: str, subs: set[str] | None = None) -> set[str]:
    want: set[str] = set()
    for f, ev in st.groups:
        if _filter_match(f, name, st.subs if subs is None else subs):
            want |= ev
    return want
