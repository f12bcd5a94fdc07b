"""Namespaces and rights: how an IMAP name reaches a mailbox, and what the session may do there.

RFCs: RFC 2342 (NAMESPACE: personal, other users', shared), RFC 4314 §4 (the rights each
command needs), §6 (a mailbox the user may not look up is indistinguishable from a missing
one), RFC 5530 §3 (``NO [NOPERM]``, ``NO [NONEXISTENT]``).

Names (delimiter ``/``):
- personal: every name not under the two prefixes below — the logged-in account's mailboxes;
- ``Other Users/<address>/<folder>``: another user's folder (Dovecot's ``shared/%u/``, Cyrus's
  ``Other Users``, the spelling Thunderbird shows as is);
- ``Shared/<address>`` (its INBOX) and ``Shared/<address>/<folder>``: a shared-mailbox account
  (``support@``, `store.acl.is_shared_account`).

Invariants:
- Every command that names a mailbox resolves it here (`resolve`, through
  `mailbox_names.get_existing`, APPEND, COPY/MOVE, CREATE): the name is checked by the naming
  policy first (no ``..``/``.``/empty components, no leading ``/``), an address is looked up as
  an account (never as a path), and the owner's folder is looked up inside the owner's account
  only — so no spelling (``../``, ``~user``, a doubled prefix) reaches a mailbox another way.
- A foreign mailbox on which the user lacks ``l`` and the right the command needs answers
  exactly like a missing one (``NO [NONEXISTENT]``); with ``l`` it is ``NO [NOPERM]``.
- The owner holds every right on their own mailboxes (`store.acl`), so personal names cost no
  store read for rights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailhouse.accounts import mailbox_names as names
from mailhouse.proto.imap.commands import Store as StoreArgs
from mailhouse.store.acl import ALL_RIGHTS, is_shared_account
from mailhouse.store.api import FlagMode, FlagResult

from .errors import No

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mailhouse.proto.imap import Command
    from mailhouse.store.api import Account, Mailbox, MessageRecord

    from .context import SessionContext
    from .selected import SelectedMailbox

DELIM = names.DELIM
OTHER_USERS = "Other Users"  # RFC 2342 §4: the other users' namespace prefix (without delimiter)
SHARED = "Shared"  # RFC 2342 §4: the shared namespace prefix
PREFIXES = (OTHER_USERS, SHARED)


def namespace_response() -> bytes:
    """RFC 2342 §5: ``* NAMESPACE personal other shared``."""
    return (
        b'* NAMESPACE (("" "/")) (("'
        + OTHER_USERS.encode()
        + b'/" "/")) (("'
        + SHARED.encode()
        + b'/" "/"))\r\n'
    )


def missing() -> No:
    return No("Mailbox does not exist", "NONEXISTENT")  # RFC 5530 §3


@dataclass(frozen=True, slots=True)
class Location:
    """Where a name points: OWNER's folder LOCAL (``own`` when OWNER is the session's account)."""

    owner: Account
    local: str
    own: bool


def is_foreign_name(name: str) -> bool:
    """Whether NAME lies under the other users' or the shared namespace."""
    return name.split(DELIM, 1)[0] in PREFIXES


def display_name(owner: Account, local: str) -> str:
    """The name under which the session sees OWNER's folder LOCAL (another account's)."""
    if is_shared_account(owner):
        return f"{SHARED}/{owner.address}" + ("" if local == "INBOX" else f"{DELIM}{local}")
    return f"{OTHER_USERS}/{owner.address}/{local}"


async def locate(s: SessionContext, name: str) -> Location | None:
    """The account and folder NAME (already policy-checked) points at; None when no account
    of that kind has that address (the caller answers as for a missing mailbox)."""
    me = s.acc()
    parts = name.split(DELIM)
    if parts[0] not in PREFIXES:
        return Location(me, name, True)
    if len(parts) < 2:
        return None
    owner = await s.store.get_account(parts[1].lower())
    if owner is None or owner.id == me.id:
        return None
    shared = is_shared_account(owner)
    if parts[0] == SHARED:
        if not shared:
            return None
        rest = parts[2:] or ["INBOX"]
    else:
        if shared or len(parts) < 3:
            return None
        rest = parts[2:]
    try:
        local = names.check_name(DELIM.join(rest))  # INBOX case-insensitive inside too
    except names.MailboxNameError:
        return None
    return Location(owner, local, False)


async def rights_on(s: SessionContext, mb: Mailbox) -> str:
    """The session's RFC 4314 rights on MB (every right on its own mailboxes)."""
    if mb.account_id == s.acc().id:
        return ALL_RIGHTS
    return await s.store.my_rights(s.acc(), mb)


def require(rights: str, need: str) -> None:
    """``NO [NOPERM]`` unless RIGHTS hold every right in NEED (RFC 4314 §4, RFC 5530 §3); a
    mailbox the user may not even look up is reported missing (RFC 4314 §6)."""
    if all(r in rights for r in need):
        return
    if "l" not in rights:
        raise missing()
    raise No(f"Permission denied (needs the {need!r} right)", "NOPERM")


@dataclass(frozen=True, slots=True)
class Resolved:
    mailbox: Mailbox  # as stored (its ``name`` is the owner's)
    rights: str
    name: str  # the name as this session sees it

    def shown(self) -> Mailbox:
        """The mailbox with the session's name for it (STATUS, LIST-STATUS lines)."""
        return (
            self.mailbox
            if self.mailbox.name == self.name
            else dataclasses.replace(self.mailbox, name=self.name)
        )


async def resolve(s: SessionContext, name: str, need: str) -> Resolved:
    """The existing mailbox NAME (policy-checked) with the rights NEED, or NO (see `require`)."""
    loc = await locate(s, name)
    if loc is None:
        raise missing()
    mb = await s.store.get_mailbox(loc.owner.id, loc.local)
    if mb is None:
        raise missing()
    if loc.own:
        return Resolved(mb, ALL_RIGHTS, name)
    rights = await s.store.my_rights(s.acc(), mb)
    require(rights, need)
    return Resolved(mb, rights, display_name(loc.owner, mb.name))


async def visible(s: SessionContext) -> dict[str, Mailbox]:
    """Other accounts' mailboxes the session may look up (``l``), by the session's names for
    them (LIST, LSUB: RFC 4314 §4 "LIST ... l")."""
    out: dict[str, Mailbox] = {}
    owners: dict[str, Account] = {}
    for sh in await s.store.shared_with(s.acc()):
        owner = owners.get(sh.owner)
        if owner is None:
            owner = await s.store.get_account(sh.owner)
            if owner is None:
                continue
            owners[sh.owner] = owner
        shown = display_name(owner, sh.mailbox.name)
        out[shown] = dataclasses.replace(sh.mailbox, name=shown)
    return out


async def selected_rights(s: SessionContext) -> str:
    """The session's current rights on the selected mailbox (re-read for a foreign mailbox, so
    a right taken away applies to the next command, on any node)."""
    view = s.selected
    assert view is not None
    return await rights_on(s, view.mailbox)


def flag_right(flag: str) -> str:
    """RFC 4314 §4 (STORE): ``s`` for \\Seen, ``t`` for \\Deleted, ``w`` for the others."""
    f = flag.lower()
    if f == "\\seen":
        return "s"
    if f == "\\deleted":
        return "t"
    return "w"


def allowed_flags(rights: str, flags: frozenset[str]) -> frozenset[str]:
    """FLAGS without those RIGHTS do not allow setting (APPEND, COPY: silently dropped)."""
    return frozenset(f for f in flags if flag_right(f) in rights)


async def create_foreign(s: SessionContext, name: str) -> None:
    """CREATE under another account's folder (RFC 4314 §4: ``k`` on the parent). The new
    mailbox inherits the parent's entries, so its creator can use it (as Dovecot does). A parent
    the user may not see and a parent without ``k`` get the same answer."""
    denied = No("Permission denied", "NOPERM")  # RFC 5530 §3
    loc = await locate(s, name)
    if loc is None or DELIM not in loc.local:
        raise denied
    parent = await s.store.get_mailbox(loc.owner.id, loc.local.rpartition(DELIM)[0])
    if parent is None:
        raise denied
    rights = await s.store.my_rights(s.acc(), parent)
    if "k" not in rights:
        raise denied
    if await s.store.get_mailbox(loc.owner.id, loc.local) is not None:
        raise No("Mailbox already exists", "ALREADYEXISTS")
    mb = await s.store.create_mailbox(loc.owner.id, loc.local)
    for entry in await s.store.get_acl(parent.id):
        await s.store.set_acl(mb.id, entry.identifier, entry.rights)


async def rename_foreign(s: SessionContext, old: str, new: str) -> None:
    """RENAME of another account's folder, inside that account (RFC 4314 §4: ``x`` on the
    mailbox, ``k`` on the new name's parent). Its inferiors go with it and its entries stay
    (they belong to the mailbox, not to the name); a name in another account, or the owner's
    INBOX, is refused ``NO [CANNOT]`` (a move between accounts is not a rename)."""
    src = await resolve(s, old, "x")
    a, b = await locate(s, old), await locate(s, new)
    if a is None or b is None or a.owner.id != b.owner.id:
        raise No("A mailbox is renamed only inside its owner's folders", "CANNOT")
    if a.local == "INBOX":
        raise No("Another user's INBOX cannot be renamed", "CANNOT")
    denied = No("Permission denied", "NOPERM")  # RFC 5530 §3; a parent out of sight alike
    if DELIM not in b.local:
        raise denied  # the top of another account's folders: no mailbox to hold k on
    parent = await s.store.get_mailbox(b.owner.id, b.local.rpartition(DELIM)[0])
    if parent is None or "k" not in await s.store.my_rights(s.acc(), parent):
        raise denied
    if b.local == "INBOX" or await s.store.get_mailbox(b.owner.id, b.local) is not None:
        raise No("Target mailbox already exists", "ALREADYEXISTS")
    if b.local.startswith(a.local + DELIM):
        raise No("Cannot rename a mailbox into its own inferior", "CANNOT")
    owned = await s.store.list_mailboxes(b.owner.id)
    children = [m for m in owned if m.name.startswith(a.local + DELIM)]
    await s.store.rename_mailbox(src.mailbox.id, b.local)
    for m in sorted(children, key=lambda m: m.name):
        await s.store.rename_mailbox(m.id, b.local + m.name[len(a.local) :])
    me = s.acc().id
    for name in await s.store.subscriptions(me):  # the renamer's subscriptions follow (as its own do)
        if name == old or name.startswith(old + DELIM):
            await s.store.set_subscribed(me, name, False)
            await s.store.set_subscribed(me, new + name[len(old) :], True)


SELECTED_NEEDS = {
    # RFC 4314 §4: what a command needs on the selected mailbox (beyond r, which SELECT needed)
    "FETCH": "r",
    "SEARCH": "r",
    "SORT": "r",
    "THREAD": "r",
    "COPY": "r",  # the target's i is checked where COPY resolves it
    "MOVE": "rte",  # RFC 6851 §3.3: MOVE is COPY + STORE \Deleted + EXPUNGE
    "EXPUNGE": "e",
}


def store_needs(mode: str, flags: frozenset[str]) -> str:
    """RFC 4314 §4 (STORE): the rights a STORE needs: per flag, and all three for a
    replacement (it may clear any flag)."""
    if mode == "":
        return "swt"
    return "".join(sorted({flag_right(f) for f in flags if f.upper() != "\\RECENT"}))


async def check_selected(s: SessionContext, cmd: Command) -> None:
    """The one rights gate of the selected state: run before every command while a mailbox
    of another account is selected (own mailboxes pass without a store read)."""
    view = s.selected
    if view is None or view.mailbox.account_id == s.acc().id:
        return
    name = cmd.name.removeprefix("UID ")
    need = SELECTED_NEEDS.get(name)
    if name == "STORE":
        args = cmd.args
        assert isinstance(args, StoreArgs)
        need = store_needs(args.mode.value, frozenset(args.flags))
    if need is None:
        return
    require(await s.store.my_rights(s.acc(), view.mailbox), need)


async def target(s: SessionContext, name: str) -> Resolved:
    """The mailbox APPEND/COPY/MOVE put messages into (RFC 4314 §4: ``i``); a missing one, or
    one the user may not see, is ``NO [TRYCREATE]`` (RFC 9051 §6.3.12, §6.4.7)."""
    try:
        return await resolve(s, names.check_name(name), "i")
    except names.MailboxNameError as e:
        raise No(str(e), "CANNOT") from None
    except No as e:
        if e.code == "NONEXISTENT":
            raise No("Target mailbox does not exist", "TRYCREATE") from None
        raise


# ---------------------------------------------------------------------------- per-user \Seen


async def overlay_seen(s: SessionContext, view: SelectedMailbox) -> None:
    """On another account's mailbox the session sees its own \\Seen (issue 13 §3): the
    message's stored \\Seen is the owner's; each reader's is kept apart (`Store.seen_by`)."""
    if view.mailbox.account_id != s.acc().id:
        view.overlay_seen(await s.store.seen_by(s.acc().id, view.mailbox.id))


async def reader_seen(s: SessionContext, mb: Mailbox) -> frozenset[int] | None:
    """The session's own seen UIDs on another account's MB; None on its own (the flag counts)."""
    if mb.account_id == s.acc().id:
        return None
    return await s.store.seen_by(s.acc().id, mb.id)


def _is_seen(flag: str) -> bool:
    return flag.lower() == "\\seen"


async def store_flags(
    s: SessionContext,
    view: SelectedMailbox,
    uids: Sequence[int],
    mode: FlagMode,
    flags: frozenset[str],
    unchanged_since: int | None = None,
) -> FlagResult:
    """`Store.store_flags` on the selected mailbox, with \\Seen kept per reader on another
    account's mailbox: the reader's \\Seen goes to its own rows, the other flags to the message
    (a FLAGS replacement keeps the owner's stored \\Seen). Returned records show the reader's
    view; UNCHANGEDSINCE applies to the shared flags only."""
    if view.seen is None:
        return await s.store.store_flags(view.mailbox.id, uids, mode, flags, unchanged_since)
    me, mid = s.acc().id, view.mailbox.id
    wants_seen = any(_is_seen(f) for f in flags)
    others = frozenset(f for f in flags if not _is_seen(f))
    seen_changed: set[int] = set()
    if mode is FlagMode.REPLACE or wants_seen:
        on = wants_seen and mode is not FlagMode.REMOVE
        target = [u for u in uids if (u in view.seen) != on]
        await s.store.set_seen_by(me, mid, target, on)
        if on:
            view.seen.update(target)
        else:
            view.seen.difference_update(target)
        seen_changed.update(target)
    updated: dict[int, MessageRecord] = {}
    failed: list[int] = []
    if mode is FlagMode.REPLACE:
        stored = view.index.records if view.index is not None else {}
        owner_seen = [u for u in uids if u in stored and "\\Seen" in stored[u].flags]
        rest = [u for u in uids if u not in set(owner_seen)]
        for part, fl in ((owner_seen, others | {"\\Seen"}), (rest, others)):
            if part:
                res = await s.store.store_flags(mid, part, mode, fl, unchanged_since)
                updated.update((r.uid, r) for r in res.updated)
                failed += res.failed_uids
    elif others:
        res = await s.store.store_flags(mid, uids, mode, others, unchanged_since)
        updated.update((r.uid, r) for r in res.updated)
        failed += res.failed_uids
    for u in seen_changed:
        if u not in updated and u in view.records:
            updated[u] = view.records[u]
    return FlagResult([view.mine(r) for r in updated.values()], failed)


async def readable(s: SessionContext) -> bool:
    """Whether updates of the selected mailbox may be delivered (RFC 4314 §4: r): a right taken
    away stops EXISTS/EXPUNGE/FETCH updates, also during IDLE, on any node."""
    view = s.selected
    return view is None or view.mailbox.account_id == s.acc().id or "r" in await selected_rights(s)


async def drop_flags(
    s: SessionContext, target: Resolved, view: SelectedMailbox, pairs: Sequence[tuple[int, int]]
) -> None:
    """After COPY/MOVE into another account's mailbox: the copies lose the flags the user has
    no right to set there (RFC 4314 §4: \\Seen needs s, \\Deleted t, the others w), as APPEND's do."""
    if target.mailbox.account_id == s.acc().id or not pairs:
        return
    stored = view.index.records if view.index is not None else {}
    present: set[str] = set()
    for src, _ in pairs:
        for rec in (view.records.get(src), stored.get(src)):
            if rec is not None:
                present |= rec.flags
    banned = frozenset(f for f in present if f != "\\Recent" and flag_right(f) not in target.rights)
    if banned:
        await s.store.store_flags(target.mailbox.id, [d for _, d in pairs], FlagMode.REMOVE, banned)
