"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS.

RFCs: RFC 9051 §5.1 (naming, INBOX), §6.3.4-6.3.11; RFC 3501 §6.3.9 (LSUB); RFC 5258
(LIST-EXTENDED: selection SUBSCRIBED / RECURSIVEMATCH / SPECIAL-USE, return SUBSCRIBED /
CHILDREN, CHILDINFO, several patterns); RFC 3348 / RFC 5258 §4 (CHILDREN: \\HasChildren,
\\HasNoChildren); RFC 6154 (SPECIAL-USE, CREATE-SPECIAL-USE ``USE``, ``[USEATTR]``); RFC 5819
(LIST-STATUS); RFC 8438 (STATUS=SIZE); RFC 7162 §3.1.6 (STATUS HIGHESTMODSEQ); RFC 7889
(APPENDLIMIT); RFC 9051 §6.3.11 (STATUS DELETED).

Naming (policy, :func:`check_name`): hierarchy delimiter ``/``; INBOX is case-insensitive
(the parser already maps it to ``INBOX``); a name is refused with ``NO [CANNOT]`` when it is
empty, starts with ``/``, has an empty component (``a//b``), a ``.`` or ``..`` component, a
NUL or another control character, or is longer than :data:`MAX_NAME_OCTETS`. Names are
looked up only inside the logged-in account (every store call carries its account id), so no
spelling reaches another account.

Invariants: RENAME of INBOX moves its messages to the new mailbox and leaves INBOX empty
(RFC 9051 §6.3.6); RENAME also renames inferiors and subscriptions; superior names are created
on CREATE/RENAME (RFC 9051 §6.3.4 "SHOULD create"); DELETE refuses a mailbox with inferiors
(``NO [INUSE]``) rather than leaving a \\Noselect placeholder the store cannot represent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import Create, List, Lsub, MailboxArg, Rename, Status
from mailhouse.store.api import Mailbox

from .errors import Bad, No

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from .session import IMAPSession, Ok

DELIM = "/"
MAX_NAME_OCTETS = 1024  # whole name; a component is limited by MAX_COMPONENT_OCTETS
MAX_COMPONENT_OCTETS = 255  # common file-system limit; keeps names portable to Maildir tools
MAX_DEPTH = 32  # hierarchy levels
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
_CTL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    """The canonical name or ``NO [CANNOT]`` (see the module docstring)."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX" + DELIM):
        name = "INBOX" + name[5:]  # RFC 9051 §5.1: INBOX is case-insensitive, also as a parent
    if not name:
        raise No("Empty mailbox name", "CANNOT")
    if _CTL.search(name):
        raise No("Control characters are not allowed in mailbox names", "CANNOT")
    if name.startswith(DELIM):
        raise No("Mailbox names cannot start with the hierarchy delimiter", "CANNOT")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        raise No("Mailbox name too long", "CANNOT")
    parts = name.split(DELIM)
    if len(parts) > MAX_DEPTH:
        raise No("Mailbox hierarchy too deep", "CANNOT")
    for p in parts:
        if p in ("", ".", ".."):
            raise No("Invalid mailbox name component", "CANNOT")
        if len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_OCTETS:
            raise No("Mailbox name component too long", "CANNOT")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise No("Invalid characters in mailbox name", "CANNOT") from None
    return name


async def get_existing(s: IMAPSession, name: str) -> Mailbox:
    name = check_name(name)
    mb = await s.store.get_mailbox(s.acc().id, name)
    if mb is None:
        raise No("Mailbox does not exist", "NONEXISTENT")  # RFC 5530 §3
    return mb


def _parents(name: str) -> list[str]:
    parts = name.split(DELIM)
    return [DELIM.join(parts[:i]) for i in range(1, len(parts))]


async def _create_parents(s: IMAPSession, name: str) -> None:
    existing = {m.name for m in await s.store.list_mailboxes(s.acc().id)}
    for p in _parents(name):
        if p not in existing:
            try:
                await s.store.create_mailbox(s.acc().id, p)
            except Exception as e:  # a concurrent CREATE of the same parent is fine
                if type(e).__name__ != "AlreadyExists":
                    raise


# ---------------------------------------------------------------------------- CREATE/DELETE/RENAME


async def cmd_create(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Create)
    raw = args.mailbox
    if raw.endswith(DELIM):  # RFC 9051 §6.3.4: trailing delimiter = intent to create inferiors
        raw = raw.rstrip(DELIM)
    name = check_name(raw)
    if name == "INBOX":
        raise No("INBOX always exists", "ALREADYEXISTS")
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
    await s.store.create_mailbox(s.acc().id, name, use)
    return None


async def cmd_delete(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, MailboxArg)
    name = check_name(args.mailbox)
    if name == "INBOX":
        raise No("INBOX cannot be deleted", "CANNOT")  # RFC 9051 §6.3.5
    mb = await get_existing(s, name)
    others = await s.store.list_mailboxes(s.acc().id)
    if any(m.name.startswith(name + DELIM) for m in others):
        raise No("Mailbox has inferior mailboxes; delete them first", "INUSE")
    if s.selected is not None and s.selected.mailbox.id == mb.id:
        from .session import State

        s.selected = None
        s.state = State.AUTHENTICATED
    await s.store.delete_mailbox(mb.id)
    return None


async def cmd_rename(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Rename)
    old = check_name(args.old)
    new = check_name(args.new.rstrip(DELIM) if args.new.endswith(DELIM) else args.new)
    acc = s.acc().id
    src = await get_existing(s, old)
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


async def cmd_subscribe(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, MailboxArg)
    name = check_name(args.mailbox)
    await get_existing(s, name)  # RFC 9051 §6.3.7: we only let existing mailboxes be subscribed
    await s.store.set_subscribed(s.acc().id, name, True)
    return None


async def cmd_unsubscribe(s: IMAPSession, cmd: Command) -> Ok | None:
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


async def cmd_list(s: IMAPSession, cmd: Command) -> Ok | None:
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
    names = set(mbs)
    # implied superiors of existing names (never created by us, but may exist in old data)
    for n in list(names):
        for p in _parents(n):
            names.add(p)
    want_subs = "SUBSCRIBED" in sel or "SUBSCRIBED" in ret
    subs = set(await s.store.subscriptions(acc)) if want_subs else set()
    regexes = [pattern_regex(args.reference, p) for p in args.patterns if p != ""]
    candidates = set(names)
    if "SUBSCRIBED" in sel:
        candidates = set(subs)
    results: list[tuple[str, list[str], list[tuple[str, response.Value]]]] = []
    childinfo_parents: set[str] = set()
    if "SUBSCRIBED" in sel and "RECURSIVEMATCH" in sel:
        for n in subs:
            for p in _parents(n):
                childinfo_parents.add(p)
    for name in sorted(candidates | childinfo_parents, key=lambda n: (n != "INBOX", n)):
        if not any(r.match(name) for r in regexes):
            continue
        mb = mbs.get(name)
        if "SPECIAL-USE" in sel and (mb is None or not mb.special_use):
            continue
        attrs = _attrs(name, names, mb)
        if mb is None and name not in names and "\\NonExistent" not in attrs:
            attrs.insert(0, "\\NonExistent")
        ext: list[tuple[str, response.Value]] = []
        if "SUBSCRIBED" in sel and name not in subs:
            if name not in childinfo_parents:
                continue
            ext.append(("CHILDINFO", ["SUBSCRIBED"]))  # RFC 5258 §3.5
        elif name in childinfo_parents and "RECURSIVEMATCH" in sel:
            ext.append(("CHILDINFO", ["SUBSCRIBED"]))
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


async def cmd_lsub(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Lsub)
    acc = s.acc().id
    if args.pattern == "":
        s.send(response.list_response(["\\Noselect"], DELIM, "", utf8=s.utf8, kind="LSUB"))
        return None
    rx = pattern_regex(args.reference, args.pattern)
    existing = {m.name for m in await s.store.list_mailboxes(acc)}
    for name in sorted(await s.store.subscriptions(acc), key=lambda n: (n != "INBOX", n)):
        if rx.match(name):
            attrs = [] if name in existing else ["\\Noselect"]
            s.send(response.list_response(attrs, DELIM, name, utf8=s.utf8, kind="LSUB"))
    return None


# ---------------------------------------------------------------------------- STATUS


async def status_items(s: IMAPSession, mb: Mailbox, items: Iterable[str]) -> list[tuple[str, int]]:
    items = list(items)
    msgs = await s.store.list_messages(mb.id)
    out: list[tuple[str, int]] = []
    for it in items:
        if it == "MESSAGES":
            out.append((it, len(msgs)))
        elif it == "UIDNEXT":
            out.append((it, mb.uidnext))
        elif it == "UIDVALIDITY":
            out.append((it, mb.uidvalidity))
        elif it == "UNSEEN":
            out.append((it, sum(1 for m in msgs if "\\Seen" not in m.flags)))
        elif it == "DELETED":  # RFC 9051 §6.3.11
            out.append((it, sum(1 for m in msgs if "\\Deleted" in m.flags)))
        elif it == "SIZE":  # RFC 8438 §2
            out.append((it, sum(m.size for m in msgs)))
        elif it == "RECENT":
            if not s.rev2:
                n = await s.claims.count_unclaimed(mb, (m.uid for m in msgs))
                if s.selected is not None and s.selected.mailbox.id == mb.id:
                    n = len(s.selected.recent)
                out.append((it, n))
        elif it == "HIGHESTMODSEQ":  # RFC 7162 §3.1.6
            out.append((it, mb.highestmodseq))
        elif it == "APPENDLIMIT":  # RFC 7889 §3
            out.append((it, s.cfg.max_message_size))
        # MAILBOXID (RFC 8474) and DELETED-STORAGE (RFC 9208) are not advertised: omitted
    return out


async def status_line(s: IMAPSession, mb: Mailbox, items: Iterable[str]) -> bytes:
    return response.status(mb.name, await status_items(s, mb, items), utf8=s.utf8, rev2=s.rev2)


async def cmd_status(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Status)
    mb = await get_existing(s, args.mailbox)
    s.send(await status_line(s, mb, args.items))
    return None
