"""Live SEARCH and SORT results: RFC 5267 §4.3 (CONTEXT=SEARCH, CONTEXT=SORT).

A ``SEARCH``/``UID SEARCH``/``SORT``/``UID SORT`` with ``RETURN (UPDATE)`` leaves a
:class:`LiveContext` on the selected mailbox; as the mailbox changes the session sends
``* ESEARCH (TAG "t") [UID] ADDTO (pos set ...)`` / ``REMOVEFROM (pos set ...)``:

* SEARCH contexts keep mailbox order and use position 0 (RFC 5267 §4.3.3-4: "MAY be zero"),
  sets in mailbox order;
* SORT contexts keep the requested order and give real 1-based positions: REMOVEFROM pairs
  name where a run of results starts before it is removed (sent from the last run to the
  first, so each position is valid when the client applies it), ADDTO pairs where a run
  starts after insertion (sent from the first to the last).

Timing (RFC 5267 §4.3.2-4): REMOVEFROM for expunged messages is produced by
:func:`before_expunge` *before* the EXPUNGE/VANISHED responses (message numbers still
valid); ADDTO for new messages by :func:`refresh` *after* EXISTS. A message whose expunge
is not reported yet (EXPUNGE deferred during FETCH/STORE/SEARCH) stays in the result until
it is.

Incremental evaluation. A context remembers the HIGHESTMODSEQ and highest UID it has seen;
every new message and every message whose MODSEQ moved past it (flag changes, by this
session or others) is re-evaluated, nothing else: message contents never change, and the
program is *frozen* at creation (RFC 5267 §4.3: "message sequence numbers used in the search
program are evaluated at the time the command is received"): sequence-number keys, ``$``
(RFC 5182) and UID sets containing ``*`` become the UID set they named then. The one key
whose value moves without any mailbox change is OLDER/YOUNGER (RFC 5032, relative to the
current time): a program containing it is re-run in full after each change (:attr:`full`).
Position of a new SORT result: a binary search over the current result, comparing with
``query.sort`` on two messages (the same collation and tie rule as the SORT itself).

Limits: :data:`MAX_CONTEXTS` contexts per selected mailbox, SEARCH and SORT together; more are
declined with ``* NO [NOUPDATE "tag"]`` (RFC 5267 §4.3.1), the command itself succeeds.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import SearchReturnOption, SortCriterion
from mailhouse.proto.imap.search import (
    SearchAnd,
    SearchFlagKey,
    SearchInterval,
    SearchKey,
    SearchNot,
    SearchOr,
    SearchSequence,
)
from mailhouse.proto.imap.sequence import SequenceSet

from . import query
from .errors import Bad
from .query import Loader, MessageView
from .selected import LiveContext, SelectedMailbox

__all__ = ["MAX_CONTEXTS", "LiveContext"]  # LiveContext lives with the view that holds it

MAX_CONTEXTS = 16
"""Live RETURN (UPDATE) contexts (SEARCH and SORT together) per selected mailbox."""

_ALL = SearchFlagKey("ALL")


def check_return_options(options: Sequence[SearchReturnOption] | None) -> None:
    """RFC 5267 §4.4: at most one PARTIAL or ALL in one command."""
    names = [o.name for o in options or ()]
    if names.count("PARTIAL") + names.count("ALL") > 1:
        raise Bad("At most one PARTIAL or ALL return option")


def check_tag(view: SelectedMailbox, tag: str) -> None:
    """RFC 5267 §4.3: UPDATE under a tag already used by a live context is rejected with BAD."""
    if any(c.tag == tag for c in view.search_contexts):
        raise Bad("Tag reuse: a RETURN (UPDATE) context with this tag is active")


def live(view: SelectedMailbox) -> list[LiveContext]:
    """The RETURN (UPDATE) contexts alive on the selected mailbox, oldest first."""
    return view.search_contexts


def start(
    view: SelectedMailbox,
    tag: str,
    *,
    uid: bool,
    criteria: SearchKey,
    charset: str | None,
    sort: tuple[SortCriterion, ...] | None,
    found: Sequence[MessageView],
    views: Sequence[MessageView],
    saved: Sequence[int] | None,
) -> bytes:
    """Keep a context for the result ``found`` (in the requested order); returns the untagged
    ``NO [NOUPDATE]`` when the limit is reached (RFC 5267 §4.3.1), else b"". ``views`` and
    ``saved`` are what the command was evaluated with (SEARCHRES ``$`` before any SAVE)."""
    if len(view.search_contexts) >= MAX_CONTEXTS:
        return response.untagged_status("NO", "Too many update contexts", "NOUPDATE " + _quoted(tag))
    frozen = freeze(criteria, views, saved)
    ctx = LiveContext(
        tag,
        uid,
        frozen,
        charset,
        sort,
        members=[v.record.uid for v in found],
        seen_modseq=view.known_modseq,
        seen_uid=view.uids[-1] if view.uids else 0,
        full=_time_relative(frozen),
    )
    if sort is None:
        ctx.members.sort()
    view.search_contexts.append(ctx)
    return b""


def cancel(view: SelectedMailbox, tags: Sequence[str]) -> None:
    """RFC 5267 §4.3.5 CANCELUPDATE: unknown tags are ignored."""
    gone = set(tags)
    view.search_contexts = [c for c in view.search_contexts if c.tag not in gone]


def _quoted(tag: str) -> str:
    return '"' + tag + '"'  # a tag is ASTRING-CHAR without "+" (RFC 9051 §9): nothing to escape


# ---------------------------------------------------------------------------- freezing


def freeze(key: SearchKey, views: Sequence[MessageView], saved: Sequence[int] | None) -> SearchKey:
    """The program with every key that depends on the moment of the command (message numbers,
    ``$``, ``*``) replaced by the UID set it selects now (RFC 5267 §4.3)."""
    if isinstance(key, SearchSequence):
        s = key.sequence
        if key.uid and not s.saved and all(r.start is not None and r.end is not None for r in s.ranges):
            return key  # a plain UID set: per message already
        saved_uids = frozenset(saved or ())
        plain = SequenceSet(s.ranges)
        max_seq = views[-1].seq if views else 0
        max_uid = views[-1].record.uid if views else 0
        uids = [
            v.record.uid
            for v in views
            if (s.saved and v.record.uid in saved_uids)
            or (
                plain.ranges
                and plain.contains(v.record.uid if key.uid else v.seq, max_uid if key.uid else max_seq)
            )
        ]
        return SearchSequence(SequenceSet.from_numbers(uids), uid=True)
    if isinstance(key, SearchNot):
        return SearchNot(freeze(key.key, views, saved))
    if isinstance(key, SearchOr):
        return SearchOr(freeze(key.left, views, saved), freeze(key.right, views, saved))
    if isinstance(key, SearchAnd):
        return SearchAnd(tuple(freeze(k, views, saved) for k in key.keys))
    return key


def _time_relative(key: SearchKey) -> bool:
    """OLDER/YOUNGER (RFC 5032) change value with time alone."""
    if isinstance(key, SearchInterval):
        return True
    if isinstance(key, SearchNot):
        return _time_relative(key.key)
    if isinstance(key, SearchOr):
        return _time_relative(key.left) or _time_relative(key.right)
    if isinstance(key, SearchAnd):
        return any(_time_relative(k) for k in key.keys)
    return False


# ---------------------------------------------------------------------------- updates


def _nums(view: SelectedMailbox, ctx: LiveContext, uids: Sequence[int]) -> list[int]:
    if ctx.uid:
        return list(uids)
    out = []
    for u in uids:
        seq = view.seq_of(u)
        if seq is not None:
            out.append(seq)
    return out


def _line(ctx: LiveContext, what: str, pairs: Sequence[tuple[int, Sequence[int]]]) -> bytes:
    body = " ".join(f"{pos} {query.ordered_set(nums)}" for pos, nums in pairs if nums)
    if not body:
        return b""
    head = response.esearch(ctx.tag, ctx.uid, [])[:-2]  # checks the tag
    return head + f" {what} ({body})".encode("ascii") + b"\r\n"


def _runs(indexes: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive ascending indexes, as (first, last)."""
    out: list[tuple[int, int]] = []
    for i in indexes:
        if out and out[-1][1] + 1 == i:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def _remove(view: SelectedMailbox, ctx: LiveContext, gone: set[int]) -> bytes:
    """Drop ``gone`` from the result; the REMOVEFROM that says so (numbers valid now)."""
    idx = [i for i, u in enumerate(ctx.members) if u in gone]
    if not idx:
        return b""
    if ctx.sort is None:
        removed = [ctx.members[i] for i in idx]
        ctx.members = [u for u in ctx.members if u not in gone]
        nums = sorted(_nums(view, ctx, removed))
        return _line(ctx, "REMOVEFROM", [(0, nums)] if nums else [])
    pairs: list[tuple[int, Sequence[int]]] = []
    for a, b in reversed(_runs(idx)):  # last run first: earlier positions stay valid
        pairs.append((a + 1, _nums(view, ctx, ctx.members[a : b + 1])))
    ctx.members = [u for u in ctx.members if u not in gone]
    return _line(ctx, "REMOVEFROM", pairs)


def before_expunge(view: SelectedMailbox, uids: set[int] | list[int]) -> bytes:
    """REMOVEFROM for results about to be expunged; call before the EXPUNGE/VANISHED
    responses for ``uids`` are generated (RFC 5267 §4.3.4)."""
    gone = set(uids)
    if not gone:
        return b""
    return b"".join(_remove(view, ctx, gone) for ctx in view.search_contexts)


def _view_of(view: SelectedMailbox, uid: int) -> MessageView | None:
    seq = view.seq_of(uid)
    if seq is None:
        return None
    return MessageView(seq, view.records[uid], uid in view.recent)


async def refresh(view: SelectedMailbox, load: Loader) -> bytes:
    """ADDTO/REMOVEFROM for every live context after the view applied its updates (EXISTS
    already sent): only new messages and messages whose MODSEQ moved are re-evaluated."""
    out = b""
    for ctx in view.search_contexts:
        out += await _refresh_one(view, ctx, load)
    return out


async def _refresh_one(view: SelectedMailbox, ctx: LiveContext, load: Loader) -> bytes:
    top = view.uids[-1] if view.uids else 0
    present = view.records
    # messages removed from the view by a path that did not report them (safety net)
    stale = {u for u in ctx.members if u not in present}
    if stale:
        ctx.members = [u for u in ctx.members if u not in stale]
    if ctx.full:
        cand = [v for v in view.views() if v.record.uid not in view.pending_expunge]
    else:
        if view.known_modseq <= ctx.seen_modseq and top <= ctx.seen_uid:
            return b""
        seen_m, seen_u = ctx.seen_modseq, ctx.seen_uid
        uids = sorted(
            u
            for u, r in present.items()
            if (r.modseq > seen_m or u > seen_u) and u not in view.pending_expunge
        )
        cand = [v for v in (_view_of(view, u) for u in uids) if v is not None]
    ctx.seen_modseq = max(ctx.seen_modseq, view.known_modseq, max((v.record.modseq for v in cand), default=0))
    ctx.seen_uid = max(ctx.seen_uid, top)
    if not cand:
        return b""
    try:
        found = await query.search(cand, ctx.criteria, load=load, charset=ctx.charset)
    except query.QueryError:
        return b""
    matched = {v.record.uid for v in found}
    mem = set(ctx.members)
    out_gone = {v.record.uid for v in cand if v.record.uid in mem and v.record.uid not in matched}
    added = [v for v in found if v.record.uid not in mem]
    out = _remove(view, ctx, out_gone) if out_gone else b""
    if not added:
        return out
    if ctx.sort is None:
        ctx.members = sorted(mem - out_gone | {v.record.uid for v in added})
        return out + _line(ctx, "ADDTO", [(0, _nums(view, ctx, sorted(v.record.uid for v in added)))])
    return out + await _sorted_insert(view, ctx, added, load)


async def _sorted_insert(
    view: SelectedMailbox, ctx: LiveContext, added: list[MessageView], load: Loader
) -> bytes:
    assert ctx.sort is not None
    try:
        ordered = await query.sort(added, ctx.sort, _ALL, load=load, charset=ctx.charset)
    except query.QueryError:
        return b""
    members = list(ctx.members)
    new_at: list[int] = []
    for v in ordered:
        lo, hi = 0, len(members)
        # bisect on "does members[mid] sort before v?" (monotone over the sorted result)
        while lo < hi:
            mid = (lo + hi) // 2
            other = _view_of(view, members[mid])
            if other is None or await _before(other, v, ctx, load):
                lo = mid + 1
            else:
                hi = mid
        # later additions of this batch sort after v: insert after any earlier-inserted ones
        members.insert(lo, v.record.uid)
        new_at = [i + 1 if i >= lo else i for i in new_at]
        bisect.insort(new_at, lo)
    ctx.members = members
    pairs = [(a + 1, _nums(view, ctx, members[a : b + 1])) for a, b in _runs(new_at)]
    return _line(ctx, "ADDTO", pairs)


async def _before(a: MessageView, b: MessageView, ctx: LiveContext, load: Loader) -> bool:
    """Does ``a`` come before ``b`` in the context's sort order (ties: mailbox order)?"""
    assert ctx.sort is not None
    got = await query.sort(
        [a, b] if a.seq < b.seq else [b, a], ctx.sort, _ALL, load=load, charset=ctx.charset
    )
    if len(got) < 2:  # one of them is gone: keep the other's place stable
        return a.seq < b.seq
    return got[0].record.uid == a.record.uid
