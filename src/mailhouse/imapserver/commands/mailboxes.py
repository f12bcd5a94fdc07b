"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE.

RFCs: RFC 9051 §5.1 (naming, INBOX), §6.3.4-6.3.11; RFC 3501 §6.3.9 (LSUB); RFC 5258
(LIST-EXTENDED: selection SUBSCRIBED / RECURSIVEMATCH / SPECIAL-USE, return SUBSCRIBED /
CHILDREN, CHILDINFO, several patterns); RFC 3348 / RFC 5258 §4 (CHILDREN: \\HasChildren,
\\HasNoChildren); RFC 6154 (SPECIAL-USE, CREATE-SPECIAL-USE ``USE``, ``[USEATTR]``); RFC 5819
(LIST-STATUS); RFC 8438 (STATUS=SIZE); RFC 7162 §3.1.6 (STATUS HIGHESTMODSEQ); RFC 7889
(APPENDLIMIT); RFC 9051 §6.3.11 (STATUS DELETED); RFC 2342 (NAMESPACE).

Naming policy (which names are valid, how they are looked up) is ``mailbox_names.py``; the
STATUS line (also sent by LIST-STATUS and NOTIFY) is ``status.py``.

Invariants: RENAME of INBOX moves its messages to the new mailbox and leaves INBOX empty
(RFC 9051 §6.3.6); RENAME also renames inferiors and subscriptions; superior names are created
on CREATE/RENAME (RFC 9051 §6.3.4 "SHOULD create"); DELETE refuses a mailbox with inferiors
(``NO [INUSE]``) rather than leaving a \\Noselect placeholder the store cannot represent.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mailhouse.message.objectid import mailboxid
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Create, List, Lsub, MailboxArg, Rename, Status

from .. import namespaces
from ..context import Ok, State
from ..errors import Bad, No
from ..mailbox_names import DELIM, check_name, check_new_name, get_existing, parents, resolve_existing
from ..status import status_line

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command
    from mailhouse.store.api import Mailbox

    from ..context import SessionContext

SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


async def _create_parents(s: SessionContext, name: str) -> None:
    existing = {m.name for m in await s.store.list_mailboxes(s.acc().id)}
    for p in parents(name):
        if p not in existing:
            try:
                await s.store.create_mailbox(s.acc().id, p)
            except Exception as e:  # a concurrent CREATE of the same parent is fine
                if type(e).__name__ != "AlreadyExists":
                    raise


# ---------------------------------------------------------------------------- CREATE/DELETE/RENAME


async def cmd_create(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Create)
    raw = args.mailbox
    if raw.endswith(DELIM):  # RFC 9051 §6.3.4: trailing delimiter = intent to create inferiors
        raw = raw.rstrip(DELIM)
    name = check_new_name(raw)  # also no LIST wildcards in a new name
    if name == "INBOX":
        raise No("INBOX always exists", "ALREADYEXISTS")
    if namespaces.is_foreign_name(name):
        await namespaces.create_foreign(s, name)  # RFC 4314 §4: k on the parent
        return None
    use: str | None = None
    if args.special_use:
        canon = {u.upper(): u for u in SPECIAL_USES}
        uses = [canon.get(u.upper()) for u in args.special_use]
        if None in uses or len(uses) > 1:
            # RFC 6154 §3: unknown (or, for us, more than one) use attribute → NO [USEATTR]
            raise No("Unsupported special-use attribute", "USEATTR")
        use = uses[0]
    if await s.store.get_mailbox(s.acc().id, name) is not None:
        raise No("Mailbox already exists", "ALREADYEXISTS")
    await _create_parents(s, name)
    mb = await s.store.create_mailbox(s.acc().id, name, use)
    # RFC 8474 §4.1: the new mailbox's MAILBOXID in the tagged OK
    return Ok("CREATE completed", f"MAILBOXID ({mailboxid(mb.id, mb.uidvalidity)})")


async def cmd_delete(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, MailboxArg)
    name = check_name(args.mailbox)
    if name == "INBOX":
        raise No("INBOX cannot be deleted", "CANNOT")  # RFC 9051 §6.3.5
    mb = await get_existing(s, name, "x")  # RFC 4314 §4: DELETE needs x
    others = await s.store.list_mailboxes(mb.account_id)
    if any(m.name.startswith(mb.name + DELIM) for m in others):
        raise No("Mailbox has inferior mailboxes; delete them first", "INUSE")
    if s.selected is not None and s.selected.mailbox.id == mb.id:
        s.selected = None
        s.state = State.AUTHENTICATED
    await s.store.delete_mailbox(mb.id)
    return None


async def cmd_rename(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Rename)
    old = check_name(args.old)
    new = check_new_name(args.new.rstrip(DELIM) if args.new.endswith(DELIM) else args.new)
    acc = s.acc().id
    if namespaces.is_foreign_name(old):  # another account's folder: renamed inside that account
        await namespaces.rename_foreign(s, old, new)
        return None
    src = await get_existing(s, old, "x")  # RFC 4314 §4: RENAME needs x on the old name
    if namespaces.is_foreign_name(new):
        raise No("A mailbox is renamed only inside its owner's folders", "CANNOT")
    if new == "INBOX" or await s.store.get_mailbox(acc, new) is not None:
        raise No("Target mailbox already exists", "ALREADYEXISTS")
    if new.startswith(old + DELIM):
        raise No("Cannot rename a mailbox into its own inferior", "CANNOT")
    await _create_parents(s, new)
    if old == "INBOX":
        # RFC 9051 §6.3.6: renaming INBOX moves all its messages to a new mailbox with the
        # given name, leaving INBOX empty; inferiors of INBOX are not renamed.
        dst = await s.store.create_mailbox(acc, new)
        uids = [m.uid for m in await s.store.list_messages(src.id)]
        if uids:
            await s.store.move(src.id, uids, dst.id)
        return None
    subs = set(await s.store.subscriptions(acc))
    children = [m for m in await s.store.list_mailboxes(acc) if m.name.startswith(old + DELIM)]
    await s.store.rename_mailbox(src.id, new)
    for m in sorted(children, key=lambda m: m.name):
        await s.store.rename_mailbox(m.id, new + m.name[len(old) :])
    for name in subs:  # keep subscriptions with the mailboxes (as Dovecot does)
        if name == old or name.startswith(old + DELIM):
            await s.store.set_subscribed(acc, name, False)
            await s.store.set_subscribed(acc, new + name[len(old) :], True)
    return None


async def cmd_subscribe(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, MailboxArg)
    name = check_name(args.mailbox)
    await get_existing(s, name, "l")  # RFC 9051 §6.3.7: we only let existing mailboxes be subscribed
    await s.store.set_subscribed(s.acc().id, name, True)
    return None


async def cmd_unsubscribe(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, MailboxArg)
    name = check_name(args.mailbox)
    await s.store.set_subscribed(s.acc().id, name, False)
    return None


# ---------------------------------------------------------------------------- LIST / LSUB


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: ``*`` matches anything, ``%`` anything but the delimiter; the reference
    is prefixed unless the pattern is absolute. INBOX matches case-insensitively."""
    full = pattern if pattern.startswith(DELIM) or not reference else reference + pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    body = "".join(out)
    if full[:5].upper() == "INBOX":
        body = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(body + r"\Z", re.S)


def _attrs(name: str, names: set[str], mb: Mailbox | None) -> list[str]:
    attrs: list[str] = []
    if mb is None:
        attrs.append("\\NonExistent" if not any(n.startswith(name + DELIM) for n in names) else "\\Noselect")
    has_children = any(n.startswith(name + DELIM) for n in names)
    attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")  # RFC 5258 §4
    if mb is not None and mb.special_use:
        attrs.append(mb.special_use)  # RFC 6154 §2
    return attrs


def _matches(regexes: list[re.Pattern[str]], name: str) -> bool:
    return any(r.match(name) for r in regexes)


def _childinfo(regexes: list[re.Pattern[str]], subs: set[str]) -> set[str]:
    """The names that get ``CHILDINFO ("SUBSCRIBED")`` (RFC 5258 §3.5, §5 example 9): a name
    matching the pattern with a subscribed descendant that does *not* match it. A descendant
    the same command lists anyway would make CHILDINFO redundant (§3.5 SHOULD NOT), and a
    subscribed parent still gets it (example 9, "eps2"). LSUB's ``\\Noselect`` placeholders
    (RFC 3501 §6.3.9) are the unsubscribed names of this set."""
    out: set[str] = set()
    for n in subs:
        if not _matches(regexes, n):
            out.update(p for p in parents(n) if _matches(regexes, p))
    return out


async def cmd_list(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, List)
    acc = s.acc().id
    if len(args.patterns) == 1 and args.patterns[0] == "" and not args.extended:
        # RFC 9051 §6.3.9: empty pattern → the hierarchy delimiter and root
        s.send(response.list_response(["\\Noselect"], DELIM, "", utf8=s.utf8))
        return None
    sel = set(args.selection_options)
    ret = set(args.return_options)
    if "RECURSIVEMATCH" in sel and not sel - {"RECURSIVEMATCH", "REMOTE"}:
        raise Bad("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3.1
    mbs = {m.name: m for m in await s.store.list_mailboxes(acc)}
    mbs.update(await namespaces.visible(s))  # RFC 4314 §4: others' mailboxes with l
    names = set(mbs)
    # implied superiors of existing names (never created by us, but may exist in old data)
    for n in list(names):
        for p in parents(n):
            names.add(p)
    want_subs = "SUBSCRIBED" in sel or "SUBSCRIBED" in ret
    subs = set(await s.store.subscriptions(acc)) if want_subs else set()
    regexes = [pattern_regex(args.reference, p) for p in args.patterns if p != ""]
    childinfo: set[str] = set()
    if "SUBSCRIBED" in sel:  # RFC 5258 §3.1: the subscribed names, existing or not
        listed = {n for n in subs if _matches(regexes, n)}
        if "RECURSIVEMATCH" in sel:
            childinfo = _childinfo(regexes, subs)
    else:
        listed = {n for n in names if _matches(regexes, n)}
    results: list[tuple[str, list[str], list[tuple[str, response.Value]]]] = []
    for name in sorted(listed | childinfo, key=lambda n: (n != "INBOX", n)):
        mb = mbs.get(name)
        if "SPECIAL-USE" in sel and (mb is None or not mb.special_use):
            continue
        attrs = _attrs(name, names, mb)
        ext: list[tuple[str, response.Value]] = []
        if name in childinfo:
            ext.append(("CHILDINFO", ["SUBSCRIBED"]))  # RFC 5258 §3.5
        if want_subs and name in subs:
            attrs.append("\\Subscribed")
        results.append((name, attrs, ext))
    for name, attrs, ext in results:
        s.send(response.list_response(attrs, DELIM, name, utf8=s.utf8, extended=ext))
        mb = mbs.get(name)
        if args.return_status is not None and mb is not None:  # RFC 5819 §2
            s.send(await status_line(s, mb, args.return_status))
        await s.maybe_flush()
    return None


async def cmd_lsub(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Lsub)
    acc = s.acc().id
    if args.pattern == "":
        s.send(response.list_response(["\\Noselect"], DELIM, "", utf8=s.utf8, kind="LSUB"))
        return None
    rx = [pattern_regex(args.reference, args.pattern)]
    existing = {m.name for m in await s.store.list_mailboxes(acc)} | set(await namespaces.visible(s))
    subs = set(await s.store.subscriptions(acc))
    listed = {n for n in subs if _matches(rx, n)}
    # RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not: "%" returns "foo" flagged \\Noselect.
    # "With the % wildcard" read as Dovecot does: a pattern ending in "%" (a level cut off)
    placeholders = _childinfo(rx, subs) - listed if args.pattern.endswith("%") else set()
    for name in sorted(listed | placeholders, key=lambda n: (n != "INBOX", n)):
        attrs = [] if name in listed and name in existing else ["\\Noselect"]
        s.send(response.list_response(attrs, DELIM, name, utf8=s.utf8, kind="LSUB"))
    return None


# ---------------------------------------------------------------------------- STATUS


async def cmd_status(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Status)
    res = await resolve_existing(s, args.mailbox, "r")  # RFC 4314 §4: STATUS needs r
    s.send(await status_line(s, res.shown(), args.items))
    return None


async def cmd_namespace(s: SessionContext, cmd: Command) -> Ok | None:
    s.send(namespaces.namespace_response())  # RFC 2342 §5: personal, other users', shared
    return None
