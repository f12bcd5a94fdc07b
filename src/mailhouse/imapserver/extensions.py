"""Wiring of the query/quota/metadata/URLAUTH modules into the session's dispatch table.

The session core (``session.py``) owns state and dispatch; the evaluation of SEARCH, SORT and
THREAD lives in ``query.py`` (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 5256
SORT/THREAD, RFC 5267 ESORT/CONTEXT, RFC 5957 SORT=DISPLAY). This module adapts a command to
those functions: it builds the message views, passes the loader and the SEARCHRES result, and
maps their errors to tagged replies. Capabilities are advertised from here only for what is
wired, so the CAPABILITY list stays honest.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mailhouse.proto.imap.commands import Search, Sort, Thread
from mailhouse.store.api import MessageRecord

from . import query
from .errors import Bad, ImapError, No
from .selected import load

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from .session import IMAPSession, Ok


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"mailhouse.imapserver.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"mailhouse.imapserver.{name}":
            return None
        raise


def _loader(s: IMAPSession) -> Callable[[MessageRecord], Awaitable[bytes]]:
    async def get(rec: MessageRecord) -> bytes:
        return (await load(s.store, rec))[0]

    return get


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
    views = view.views()
    try:
        found = await query.search(
            views, args.criteria, load=_loader(s), saved=view.saved, charset=args.charset  # type: ignore[arg-type]
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
    if "UPDATE" in _names(ret):  # RFC 5267 §4.2: keep the search alive
        ctx = query.SearchContext(cmd.tag, args.criteria, args.uid, args.charset)
        ctx.current = {v.record.uid for v in found}
        view.search_contexts.append(ctx)
    return None


async def cmd_sort(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Sort)
    view = s.selected
    assert view is not None
    modseq = query.uses_modseq(args.search)
    try:
        ordered = await query.sort(
            view.views(), args.criteria, args.search, load=_loader(s), saved=view.saved, charset=args.charset  # type: ignore[arg-type]
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
    return None


async def cmd_thread(s: IMAPSession, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Thread)
    view = s.selected
    assert view is not None
    try:
        data = await query.thread(
            view.views(), args.algorithm, args.search, uid=args.uid, load=_loader(s),  # type: ignore[arg-type]
            saved=view.saved, charset=args.charset,
        )
    except query.QueryError as e:
        _raise(e)
        raise
    s.send(query.format_thread(data))
    return None


async def after_update(s: IMAPSession) -> None:
    """RFC 5267 §4.3: refresh live SEARCH contexts after the view reported changes."""
    view = s.selected
    if view is None or not view.search_contexts:
        return
    views = view.views()
    for ctx in view.search_contexts:
        assert isinstance(ctx, query.SearchContext)
        try:
            s.send(await ctx.refresh(views, load=_loader(s), saved=view.saved))  # type: ignore[arg-type]
        except ImapError:
            continue


async def resolve_url(s: IMAPSession, url: bytes) -> bytes | None:
    """Octets of a URLAUTH-authorised URL (RFC 4467) via the URLAUTH module, else None."""
    return None


COMMANDS: dict[str, Callable[..., Awaitable[Any]]] = {
    "SEARCH": cmd_search,
    "UID SEARCH": cmd_search,
    "SORT": cmd_sort,
    "UID SORT": cmd_sort,
    "THREAD": cmd_thread,
    "UID THREAD": cmd_thread,
}
AUTH_COMMANDS: frozenset[str] = frozenset()
SELECTED_COMMANDS: frozenset[str] = frozenset(("SEARCH", "UID SEARCH", "SORT", "UID SORT", "THREAD", "UID THREAD"))


def capabilities(s: IMAPSession) -> list[str]:
    caps = ["ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY", "ESORT"]
    caps += [f"THREAD={a}" for a in query.THREAD_ALGORITHMS]
    return caps


def enableable(s: IMAPSession) -> set[str]:
    return set()
