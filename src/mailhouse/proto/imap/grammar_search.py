"""IMAP grammar: SEARCH, ESEARCH, SORT, THREAD and CANCELUPDATE.

SEARCH with CHARSET and RETURN options (RFC 9051 §6.4.4; ESEARCH RFC 4731 §3.1; SEARCHRES
RFC 5182; CONTEXT RFC 5267 §4.4; PARTIAL RFC 9394 §2), multi-mailbox ESEARCH (RFC 7377 §2),
SORT with ESORT (RFC 5256 §3; RFC 5267 §3; DISPLAYFROM/DISPLAYTO RFC 5957 §3), THREAD
(RFC 5256 §3) and CANCELUPDATE (RFC 5267 §4.5). The search program itself is parsed by
:func:`mailhouse.proto.imap.search.parse_search_program`.

The ``parse_*`` functions follow the conventions of :mod:`~mailhouse.proto.imap.grammar`
(signature, pure syntax, refusals).

Invariant of this family: recursion only in search keys, bounded by
:data:`~mailhouse.proto.imap.search.MAX_SEARCH_DEPTH`.
"""

from __future__ import annotations

import re

from mailhouse.proto.imap.commands import (
    CancelUpdate,
    MailboxFilter,
    MailboxFilterKind,
    MultiSearch,
    Search,
    SearchReturnOption,
    Sort,
    SortCriterion,
    Thread,
)
from mailhouse.proto.imap.grammar_mailbox import mailbox_filter
from mailhouse.proto.imap.reader import Reader
from mailhouse.proto.imap.search import SearchKey, parse_search_program

_SEARCH_RETURN = frozenset(
    ("MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL", "RELEVANCY")
)
_PARTIAL_RANGE = re.compile(rb"-?[1-9][0-9]*:-?[1-9][0-9]*")  # RFC 9394 §2 partial-range


def return_opts(r: Reader) -> tuple[SearchReturnOption, ...]:
    """search-return-opts = "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"."""
    r.sp()
    r.expect(b"(")
    opts: list[SearchReturnOption] = []
    while not r.try_take(b")"):
        if opts:
            r.sp()
        name = r.atom().upper()
        if name not in _SEARCH_RETURN:  # RFC 4731 §3.1, RFC 5182, RFC 5267 §4.4, RFC 9394
            r.error(f"Unknown RETURN option {name[:40]}")
        value: str | None = None
        if name == "PARTIAL":
            r.sp()
            tok = r.match(_PARTIAL_RANGE)
            if tok is None:
                r.error("Bad PARTIAL range")
            value = tok.decode("ascii")
        opts.append(SearchReturnOption(name, value))
    return tuple(opts)


def _charset_and_program(r: Reader) -> tuple[str | None, SearchKey]:
    charset: str | None = None
    if r.try_take_ci(b"CHARSET"):  # RFC 9051 §6.4.4: ["CHARSET" SP charset SP]
        r.sp()
        charset = r.astring().decode("ascii", "replace").upper()
        r.sp()
    return charset, parse_search_program(r)


def parse_search(r: Reader, uid: bool) -> Search:
    r.sp()
    ret: tuple[SearchReturnOption, ...] | None = None
    if r.try_take_ci(b"RETURN"):
        ret = return_opts(r)
        r.sp()
    charset, program = _charset_and_program(r)
    return Search(uid, program, charset, ret)


_ESEARCH_FILTERS = frozenset(MailboxFilterKind) - {MailboxFilterKind.SELECTED_DELAYED}


def parse_esearch(r: Reader, uid: bool) -> MultiSearch:
    r.sp()
    sources: list[MailboxFilter] = []
    if r.try_take_ci(b"IN"):  # RFC 7377 §2: esearch-source-opts = "IN" SP "(" source-mbox ")"
        r.sp()
        r.expect(b"(")
        sources.append(mailbox_filter(r, _ESEARCH_FILTERS))
        while not r.try_take(b")"):
            r.sp()
            sources.append(mailbox_filter(r, _ESEARCH_FILTERS))
        r.sp()
    ret: tuple[SearchReturnOption, ...] | None = None
    if r.try_take_ci(b"RETURN"):
        ret = return_opts(r)
        r.sp()
    charset, program = _charset_and_program(r)
    return MultiSearch(tuple(sources), program, charset, ret)


_SORT_KEYS = frozenset("ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO".split())


def parse_sort(r: Reader, uid: bool) -> Sort:
    r.sp()
    ret: tuple[SearchReturnOption, ...] | None = None
    if r.try_take_ci(b"RETURN"):  # RFC 5267 §3 (ESORT)
        ret = return_opts(r)
        r.sp()
    r.expect(b"(")  # RFC 5256 §5: sort-criteria = "(" sort-criterion *(SP sort-criterion) ")"
    crit: list[SortCriterion] = []
    while not r.try_take(b")"):
        if crit:
            r.sp()
        reverse = False
        key = r.atom().upper()
        if key == "REVERSE":
            reverse = True
            r.sp()
            key = r.atom().upper()
        if key not in _SORT_KEYS:  # RFC 5256 §3, RFC 5957 §3 DISPLAYFROM/DISPLAYTO
            r.error(f"Unknown sort key {key[:40]}")
        crit.append(SortCriterion(key, reverse))
    if not crit:
        r.error("Empty sort criteria")
    r.sp()
    charset = r.astring().decode("ascii", "replace").upper()
    r.sp()
    return Sort(uid, tuple(crit), charset, parse_search_program(r), ret)


def parse_thread(r: Reader, uid: bool) -> Thread:
    r.sp()
    alg = r.atom().upper()  # RFC 5256 §5: thread-alg = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext
    r.sp()
    charset = r.astring().decode("ascii", "replace").upper()
    r.sp()
    return Thread(uid, alg, charset, parse_search_program(r))


def parse_cancelupdate(r: Reader, uid: bool) -> CancelUpdate:
    """RFC 5267 §4.5: ``CANCELUPDATE 1*(SP quoted)`` (the tags of the searches to stop)."""
    tags: list[str] = []
    while not r.eol() or not tags:
        r.sp()
        tags.append(r.quoted().decode("utf-8", "replace"))
    return CancelUpdate(tuple(tags))
