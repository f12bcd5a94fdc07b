"""EXPUNGE and UID EXPUNGE.

RFCs: RFC 9051 §6.4.3 (EXPUNGE: remove \\Deleted messages, one EXPUNGE response each), §6.4.9 /
RFC 4315 §2.1 (UID EXPUNGE: only the given UIDs); RFC 7162 §3.2.10 (VANISHED instead of
EXPUNGE with QRESYNC); RFC 5267 §4.3.4 (REMOVEFROM first).

Invariants: a read-only (EXAMINE) view expunges nothing; \\Deleted set by other sessions
counts (the view is refreshed first); responses describe what the store actually removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.imap.commands import Expunge

from ..updates import before_expunge

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import Ok, SessionContext


async def cmd_expunge(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    view = s.selected
    assert view is not None
    view.check_writable()
    await view.refresh()  # \Deleted set by other sessions counts too
    candidates = view.uids
    if isinstance(args, Expunge) and args.uid_set is not None:  # RFC 4315 §2.1 UID EXPUNGE
        candidates = view.resolve(args.uid_set, True)
    uids = [u for u in candidates if u in view.records and "\\Deleted" in view.records[u].flags]
    if uids:
        gone, _ = await s.store.expunge(view.mailbox.id, uids)
        before_expunge(s, gone)  # RFC 5267 §4.3.4: REMOVEFROM first
        s.send(view.expunge_responses(gone))
    return None
