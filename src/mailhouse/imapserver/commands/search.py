"""SEARCH, SORT, THREAD (and their UID forms), CANCELUPDATE: commands over ``query.py``.

RFCs: RFC 9051 §6.4.4 (SEARCH; rev2 answers with ESEARCH), RFC 4731 (ESEARCH return options),
RFC 5182 (SEARCHRES: SAVE and ``$``; a failed SAVE empties the result), RFC 5256 (SORT,
THREAD), RFC 5267 (ESORT; CONTEXT=SEARCH/SORT: RETURN (UPDATE), CANCELUPDATE), RFC 5957
(SORT=DISPLAY), RFC 7162 §3.1.5 (SEARCH MODSEQ enables CONDSTORE), RFC 7377 (MULTISEARCH:
the ESEARCH command over several mailboxes).

ESEARCH (RFC 7377 §2): the sources are the mailboxes of the logged-in account named by the
``IN (...)`` filters (deduplicated, INBOX first then by name; names that do not exist match
nothing), or the selected mailbox when there is no ``IN``. Results are always UIDs, one
``* ESEARCH (TAG "t" MAILBOX "m" UIDVALIDITY n) UID ...`` per mailbox with at least one match.
Sequence numbers in the program count each mailbox's messages in UID order; ``$`` is the
selected mailbox's saved result and matches nothing elsewhere; SAVE is allowed only when the
selected mailbox is the only source.

The evaluation lives in ``query.py`` and the live contexts in ``contexts.py``; this module
adapts a command to them: it builds the message views, passes the loader and the SEARCHRES
result, and maps their errors to tagged replies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import (
    CancelUpdate,
    MailboxFilter,
    MailboxFilterKind,
    MultiSearch,
    Search,
    Sort,
    Thread,
)

from .. import contexts, query
from ..errors import Bad, No
from ..mailbox_names import DELIM, check_name

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command
    from mailhouse.store.api import Mailbox

    from ..context import Ok, SessionContext


def _raise(e: query.QueryError) -> None:
    cls = Bad if e.status == "BAD" else No
    raise cls(e.text, e.code)


def _budget(s: SessionContext) -> dict[str, Any]:
    """The configured limits of one SEARCH/SORT/THREAD (issue 12 item 4): past the time budget
    the command is answered ``NO [LIMIT]`` (RFC 5530 §3, ``query.SearchTooLong``)."""
    return {
        "time_budget": s.cfg.search_time_budget,
        "max_decoded_bytes": s.cfg.search_max_decoded_bytes,
    }


def _names(opts: Any) -> set[str]:
    return {o.name for o in opts or ()}


async def cmd_search(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Search)
    view = s.selected
    assert view is not None
    ret = args.return_options
    if ret is None and s.rev2:
        ret = ()  # RFC 9051 §6.4.4: IMAP4rev2 answers SEARCH with ESEARCH
    modseq = query.uses_modseq(args.criteria)
    if modseq and not s.condstore:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1.5: SEARCH MODSEQ enables CONDSTORE
        s.send(view.enable_condstore())
    contexts.check_return_options(ret)
    if "UPDATE" in _names(ret):
        contexts.check_tag(view, cmd.tag)
    lazy = not view.views_built() and "UPDATE" not in _names(ret) and query.narrows(args.criteria)
    # issue 13 §4: a search the word index narrows makes the views of its candidates only
    views = query.LazyViews(view.uids, view.records, view.recent) if lazy else view.views()
    saved_before = view.saved
    try:
        found = await query.search(
            views,
            args.criteria,
            load=s.node.messages,
            saved=saved_before,
            charset=args.charset,
            uids=view.uids,
            **_budget(s),
        )
    except query.QueryError as e:
        if "SAVE" in _names(ret):
            view.saved = []  # RFC 5182 §2.1: a failed SAVE empties the saved result
        _raise(e)
        raise
    out = query.format_search(cmd.tag, found, uid=args.uid, return_options=ret, modseq=modseq)
    if out.save is not None:
        view.saved = out.save
    s.send(out.data)
    if "UPDATE" in _names(ret):  # RFC 5267 §4.3: keep the search alive (contexts.py)
        s.send(
            contexts.start(
                view,
                cmd.tag,
                uid=args.uid,
                criteria=args.criteria,
                charset=args.charset,
                sort=None,
                found=found,
                views=views,
                saved=saved_before,
            )
        )
    return None


async def cmd_cancelupdate(s: SessionContext, cmd: Command) -> Ok | None:
    """RFC 5267 §4.3.5: end the named RETURN (UPDATE) contexts; unknown tags are ignored (the
    context may already be gone, e.g. refused with NOUPDATE)."""
    args = cmd.args
    assert isinstance(args, CancelUpdate)
    view = s.selected
    assert view is not None
    contexts.cancel(view, args.tags)
    return None


async def cmd_sort(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Sort)
    view = s.selected
    assert view is not None
    contexts.check_return_options(args.return_options)
    update = "UPDATE" in _names(args.return_options)
    if update:
        contexts.check_tag(view, cmd.tag)
    modseq = query.uses_modseq(args.search)
    views = view.views()
    saved_before = view.saved
    try:
        ordered = await query.sort(
            views,
            args.criteria,
            args.search,
            load=s.node.messages,
            saved=saved_before,
            charset=args.charset,
            **_budget(s),
        )
    except query.QueryError as e:
        if "SAVE" in _names(args.return_options):
            view.saved = []
        _raise(e)
        raise
    out = query.format_sort(cmd.tag, ordered, uid=args.uid, return_options=args.return_options, modseq=modseq)
    if out.save is not None:
        view.saved = out.save
    s.send(out.data)
    if update:  # RFC 5267 §4.3 CONTEXT=SORT: ADDTO/REMOVEFROM with positions (contexts.py)
        s.send(
            contexts.start(
                view,
                cmd.tag,
                uid=args.uid,
                criteria=args.search,
                charset=args.charset,
                sort=args.criteria,
                found=ordered,
                views=views,
                saved=saved_before,
            )
        )
    return None


async def cmd_thread(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Thread)
    view = s.selected
    assert view is not None
    try:
        data = await query.thread(
            view.views(),
            args.algorithm,
            args.search,
            uid=args.uid,
            load=s.node.messages,
            saved=view.saved,
            charset=args.charset,
            **_budget(s),
        )
    except query.QueryError as e:
        _raise(e)
        raise
    s.send(query.format_thread(data))
    return None


# ---------------------------------------------------------------------------- ESEARCH (RFC 7377)


def _source_match(f: MailboxFilter, name: str, subs: set[str]) -> bool:
    """RFC 7377 §2 source-mbox / RFC 5465 §6 filter-mailboxes (SELECTED is handled apart)."""
    k = f.kind
    if k is MailboxFilterKind.PERSONAL:  # RFC 5465 §6: every mailbox of the user
        return True
    if k is MailboxFilterKind.INBOXES:  # RFC 5465 §6: where new mail is delivered: INBOX here
        return name == "INBOX"
    if k is MailboxFilterKind.SUBSCRIBED:
        return name in subs
    roots = [check_name(m) for m in f.mailboxes]
    if k is MailboxFilterKind.MAILBOXES:
        return name in roots
    if k is MailboxFilterKind.SUBTREE:  # RFC 5465 §6: the mailbox and all its inferiors
        return any(name == r or name.startswith(r + DELIM) for r in roots)
    if k is MailboxFilterKind.SUBTREE_ONE:  # RFC 7377 §2: the mailbox and its immediate children
        return any(
            name == r or (name.startswith(r + DELIM) and DELIM not in name[len(r) + 1 :]) for r in roots
        )
    return False


async def _sources(s: SessionContext, filters: tuple[MailboxFilter, ...]) -> list[Mailbox]:
    view = s.selected
    if not filters:  # RFC 7377 §2: no source options → the selected mailbox
        if view is None:
            raise Bad("ESEARCH without IN needs a selected mailbox")
        return [view.mailbox]
    acc = s.acc().id
    mbs = await s.store.list_mailboxes(acc)
    subs = (
        set(await s.store.subscriptions(acc))
        if any(f.kind is MailboxFilterKind.SUBSCRIBED for f in filters)
        else set()
    )
    chosen: dict[int, Mailbox] = {}  # RFC 7377 §2: each mailbox is searched once
    for f in filters:
        if f.kind is MailboxFilterKind.SELECTED:
            if view is None:
                raise Bad("No mailbox is selected")  # RFC 7377 §2: "selected" needs one
            chosen[view.mailbox.id] = view.mailbox
            continue
        for m in mbs:
            if _source_match(f, m.name, subs):
                chosen[m.id] = m
    return sorted(chosen.values(), key=lambda m: (m.name != "INBOX", m.name))


async def cmd_esearch(s: SessionContext, cmd: Command) -> Ok | None:
    """RFC 7377 §2: SEARCH over several mailboxes (see the module docstring)."""
    args = cmd.args
    assert isinstance(args, MultiSearch)
    ret = args.return_options or ()
    contexts.check_return_options(ret)
    if "UPDATE" in _names(ret) or "CONTEXT" in _names(ret):
        raise Bad("RETURN (UPDATE) is not available with ESEARCH")  # RFC 5267 contexts: SEARCH only
    view = s.selected
    mailboxes = await _sources(s, args.sources)
    selected_id = view.mailbox.id if view is not None else None
    save = "SAVE" in _names(ret)
    if save and [m.id for m in mailboxes] != [selected_id]:
        raise Bad("SAVE needs the selected mailbox as the only source")  # RFC 7377 §2
    modseq = query.uses_modseq(args.criteria)
    if modseq and not s.condstore:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1.5: SEARCH MODSEQ enables CONDSTORE
        if view is not None:
            s.send(view.enable_condstore())
    load = s.node.messages
    for mb in mailboxes:
        if view is not None and mb.id == selected_id:
            views, saved = view.views(), view.saved
            uidvalidity = view.mailbox.uidvalidity
        else:
            records = await s.store.list_messages(mb.id)
            views = [query.MessageView(i + 1, r) for i, r in enumerate(sorted(records, key=lambda r: r.uid))]
            saved, uidvalidity = None, mb.uidvalidity
        try:
            found = await query.search(
                views, args.criteria, load=load, saved=saved, charset=args.charset, **_budget(s)
            )
        except query.QueryError as e:
            if save and view is not None:
                view.saved = []  # RFC 5182 §2.1: a failed SAVE empties the saved result
            _raise(e)
            raise
        items, saved_now = query.esearch_items(found, ret, uid=True, modseq=modseq)
        if saved_now is not None and view is not None:
            view.saved = saved_now
        if not found:
            continue  # RFC 7377 §2: no ESEARCH response for a mailbox without matches
        if ret and not _names(ret) - {"SAVE"}:
            continue  # RFC 5182 §2.4: RETURN (SAVE) alone sends no ESEARCH
        s.send(
            b"* ESEARCH (TAG "
            + response.string(cmd.tag)
            + b" MAILBOX "
            + response.mailbox(mb.name, utf8=s.utf8)
            + b" UIDVALIDITY %d) UID" % uidvalidity
            + "".join(f" {k} {v}" for k, v in items).encode("ascii")
            + b"\r\n"
        )
        await s.maybe_flush()
    return None
