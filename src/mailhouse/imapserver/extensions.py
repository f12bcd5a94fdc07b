"""Wiring of the query/quota/metadata/URLAUTH modules into the session's dispatch table.

The session core (``session.py``) owns state and dispatch; the evaluation of SEARCH, SORT and
THREAD lives in ``query.py`` (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 5256
SORT/THREAD, RFC 5267 ESORT/CONTEXT, RFC 5957 SORT=DISPLAY). This module adapts a command to
those functions: it builds the message views, passes the loader and the SEARCHRES result, and
maps their errors to tagged replies. Capabilities are advertised from here only for what is
wired, so the CAPABILITY list stays honest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mailhouse.message.cache import CachedMessage
from mailhouse.proto.imap.commands import (
    CancelUpdate,
    GenUrlAuth,
    GetMetadata,
    GetQuota,
    MailboxArg,
    ResetKey,
    Search,
    SetMetadata,
    SetQuota,
    Sort,
    Thread,
    UrlFetch,
)
from mailhouse.store.api import MessageRecord, Store

from . import contexts, metadata, query, quota, urlauth
from .errors import Bad, No
from .selected import cached, load

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from .session import IMAPSession, Ok


class _Loader:
    """query's loader: the process's parsed-message cache (``peek`` lets a SEARCH skip the
    await for messages already cached and batch-load the rest)."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, rec: MessageRecord) -> CachedMessage:
        return await load(self.store, rec)

    @staticmethod
    def peek(rec: MessageRecord) -> CachedMessage | None:
        return cached(rec)


def _loader(s: IMAPSession) -> _Loader:
    return _Loader(s.store)


def _raise(e: query.QueryError) -> None:
    cls = Bad if e.status == "BAD" else No
    raise cls(e.text, e.code)


def _names(opts: Any) -> set[str]:
    return {o.name for o in opts or ()}


async def cmd_search(s: IMAPSession, cmd: Command) -> Ok | None:
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
        view.condstore = True
    contexts.check_return_options(ret)
    if "UPDATE" in _names(ret):
        contexts.check_tag(view, cmd.tag)
    views = view.views()
    saved_before = view.saved
    try:
        found = await query.search(
            views,
            args.criteria,
            load=_loader(s),
            saved=saved_before,
            charset=args.charset,
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


async def cmd_cancelupdate(s: IMAPSession, cmd: Command) -> Ok | None:
    """RFC 5267 §4.3.5: end the named RETURN (UPDATE) contexts; unknown tags are ignored (the
    context may already be gone, e.g. refused with NOUPDATE)."""
    args = cmd.args
    assert isinstance(args, CancelUpdate)
    view = s.selected
    assert view is not None
    contexts.cancel(view, args.tags)
    return None


async def cmd_sort(s: IMAPSession, cmd: Command) -> Ok | None:
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
            load=_loader(s),
            saved=saved_before,
            charset=args.charset,
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


async def cmd_thread(s: IMAPSession, cmd: Command) -> Ok | None:
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
            load=_loader(s),
            saved=view.saved,
            charset=args.charset,
        )
    except query.QueryError as e:
        _raise(e)
        raise
    s.send(query.format_thread(data))
    return None


async def after_update(s: IMAPSession) -> None:
    """RFC 5267 §4.3: ADDTO/REMOVEFROM for live contexts after the view reported changes."""
    view = s.selected
    if view is None or not view.search_contexts:
        return
    s.send(await contexts.refresh(view, _loader(s)))


def before_expunge(s: IMAPSession, uids: set[int] | list[int]) -> None:
    """RFC 5267 §4.3.4: REMOVEFROM for expunged results goes out before their EXPUNGE."""
    view = s.selected
    if view is not None and view.search_contexts and uids:
        s.send(contexts.before_expunge(view, uids))


async def resolve_url(s: IMAPSession, url: bytes) -> bytes | None:
    """Octets of a CATENATE URL part (RFC 4469 §5) via ``urlauth.resolve_url``, which checks
    URLAUTH tokens and keeps plain URLs inside the logged-in account (``NO [BADURL]``)."""
    return await urlauth.resolve_url(s.store, s.acc(), url, hostnames=_hostnames(s))


def _hostnames(s: IMAPSession) -> set[str]:
    return {s.cfg.hostname, "localhost", "127.0.0.1"}


async def _reply(s: IMAPSession, cmd: Command, reply: Any) -> Ok | None:
    """quota/metadata/urlauth return ``Reply(data, text, code)``: untagged data then OK."""
    from .session import Ok

    s.send(reply.data)
    return Ok(reply.text, reply.code)


async def cmd_getquota(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, GetQuota)
    return await _reply(s, cmd, await quota.getquota(s.store, s.acc(), cmd.args))


async def cmd_getquotaroot(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, MailboxArg)
    from .mailboxes import get_existing

    await get_existing(s, cmd.args.mailbox)
    return await _reply(s, cmd, await quota.getquotaroot(s.store, s.acc(), cmd.args, utf8=s.utf8))


async def cmd_setquota(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, SetQuota)
    return await _reply(s, cmd, await quota.setquota(s.store, s.acc(), cmd.args))


async def cmd_getmetadata(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, GetMetadata)
    return await _reply(s, cmd, await metadata.getmetadata(s.store, s.acc(), cmd.args, utf8=s.utf8))


async def cmd_setmetadata(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, SetMetadata)
    return await _reply(s, cmd, await metadata.setmetadata(s.store, s.acc(), cmd.args))


async def cmd_genurlauth(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, GenUrlAuth)
    return await _reply(s, cmd, await urlauth.genurlauth(s.store, s.acc(), cmd.args, hostnames=_hostnames(s)))


async def cmd_resetkey(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, ResetKey)
    return await _reply(s, cmd, await urlauth.resetkey(s.store, s.acc(), cmd.args))


async def cmd_urlfetch(s: IMAPSession, cmd: Command) -> Ok | None:
    assert isinstance(cmd.args, UrlFetch)
    # RFC 5524 §4: the typed arguments (plain urls and "(url [BODYPARTSTRUCTURE] [BINARY|BODY])")
    reqs = [
        urlauth.FetchRequest(
            i.url, binary=i.binary, bodypartstructure=i.bodypartstructure, body=i.body, extended=i.extended
        )
        for i in cmd.args.requests()
    ]
    return await _reply(s, cmd, await urlauth.urlfetch(s.store, s.acc(), reqs, hostnames=_hostnames(s)))


COMMANDS: dict[str, Callable[..., Awaitable[Any]]] = {
    "SEARCH": cmd_search,
    "UID SEARCH": cmd_search,
    "SORT": cmd_sort,
    "UID SORT": cmd_sort,
    "THREAD": cmd_thread,
    "UID THREAD": cmd_thread,
    "GETQUOTA": cmd_getquota,
    "GETQUOTAROOT": cmd_getquotaroot,
    "SETQUOTA": cmd_setquota,
    "GETMETADATA": cmd_getmetadata,
    "SETMETADATA": cmd_setmetadata,
    "GENURLAUTH": cmd_genurlauth,
    "RESETKEY": cmd_resetkey,
    "URLFETCH": cmd_urlfetch,
    "CANCELUPDATE": cmd_cancelupdate,
}
AUTH_COMMANDS: frozenset[str] = frozenset(
    (
        "GETQUOTA",
        "GETQUOTAROOT",
        "SETQUOTA",
        "GETMETADATA",
        "SETMETADATA",
        "GENURLAUTH",
        "RESETKEY",
        "URLFETCH",
    )
)
SELECTED_COMMANDS: frozenset[str] = frozenset(
    ("SEARCH", "UID SEARCH", "SORT", "UID SORT", "THREAD", "UID THREAD", "CANCELUPDATE")
)


def capabilities(s: IMAPSession) -> list[str]:
    # CONTEXT=SEARCH, CONTEXT=SORT (RFC 5267 §4): RETURN (UPDATE) contexts (contexts.py),
    # ADDTO/REMOVEFROM (positions for SORT), CANCELUPDATE, PARTIAL.
    caps = ["ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY", "ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT"]
    caps += [f"THREAD={a}" for a in query.THREAD_ALGORITHMS]
    caps += list(quota.CAPABILITIES) + list(metadata.CAPABILITIES)
    caps += list(urlauth.CAPABILITIES)  # URLAUTH, URLAUTH=BINARY (RFC 5524 URLFETCH items)
    caps.append("CATENATE")  # RFC 4469: URL parts resolved by urlauth.resolve_url
    return caps


def enableable(s: IMAPSession) -> set[str]:
    return set()
