"""imapserver.contexts: live SEARCH/SORT results (RFC 5267 §4.3) on an in-memory selected view:
positions of ADDTO/REMOVEFROM in sorted contexts, incremental re-evaluation (only changed
messages are loaded), frozen message numbers, the full-run fallback for OLDER/YOUNGER."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailhouse.imapserver import contexts
from mailhouse.imapserver.errors import Bad
from mailhouse.imapserver.query import MessageView
from mailhouse.imapserver.selected import SelectedMailbox
from mailhouse.proto.imap.commands import SearchReturnOption, SortCriterion
from mailhouse.proto.imap.reader import Reader
from mailhouse.proto.imap.search import parse_search_program
from mailhouse.store.api import Mailbox, MessageRecord


def crit(text: str):
    return parse_search_program(Reader([text.encode()], True))


class Box:
    """A selected view over messages whose subject is their blob key."""

    def __init__(self, subjects: list[str]) -> None:
        self.modseq = 10
        self.loads: list[str] = []
        recs = [self._rec(10 * (i + 1), s) for i, s in enumerate(subjects)]
        mb = Mailbox(1, 1, "INBOX", 7, 10 * len(subjects) + 1, self.modseq, None)
        self.view = SelectedMailbox(None, mb, recs, readonly=False, rev2=True, condstore=False, qresync=False)  # type: ignore[arg-type]

    def _rec(self, uid: int, subject: str, flags: frozenset[str] = frozenset()) -> MessageRecord:
        self.modseq += 1
        return MessageRecord(1, uid, self.modseq, flags, time.time() - 3600 + uid, 100, subject)

    async def load(self, rec: MessageRecord) -> bytes:
        self.loads.append(rec.blob_key)
        return f"From: a@b.c\r\nSubject: {rec.blob_key}\r\n\r\nbody\r\n".encode()

    def add(self, uid: int, subject: str) -> None:
        rec = self._rec(uid, subject)
        self.view.uids.append(uid)
        self.view.records[uid] = rec
        self.view.known_modseq = self.modseq
        self.view._views = None  # the numbering changed behind the view's back: rebuild its SEARCH views

    def flag(self, uid: int, *flags: str) -> None:
        old = self.view.records[uid]
        self.view.records[uid] = rec = self._rec(uid, old.blob_key, frozenset(flags))
        self.view._view_record(rec)  # as the real refresh does
        self.view.known_modseq = self.modseq

    def start(self, tag: str, text: str, *, uid: bool = True, sort: str | None = None) -> list[int]:
        views = self.view.views()
        crit_ = crit(text)
        from mailhouse.imapserver import query

        if sort is None:
            found = asyncio.run(query.search(views, crit_, load=self.load))
            order = None
        else:
            order = tuple(_sort_criteria(sort))
            found = asyncio.run(query.sort(views, order, crit_, load=self.load))
        out = contexts.start(
            self.view,
            tag,
            uid=uid,
            criteria=crit_,
            charset=None,
            sort=order,
            found=found,
            views=views,
            saved=self.view.saved,
        )
        assert out == b""
        return [v.record.uid for v in found]

    def refresh(self) -> bytes:
        self.loads.clear()
        return asyncio.run(contexts.refresh(self.view, self.load))


def _sort_criteria(text: str) -> list[SortCriterion]:
    out, rev = [], False
    for k in text.split():
        if k == "REVERSE":
            rev = True
            continue
        out.append(SortCriterion(k, rev))
        rev = False
    return out


def test_sort_context_positions() -> None:
    b = Box(["b", "d", "f"])
    assert b.start("S1", "ALL", sort="SUBJECT") == [10, 20, 30]
    b.add(40, "c")
    assert b.refresh() == b'* ESEARCH (TAG "S1") UID ADDTO (2 40)\r\n'
    # two new results in one change, at both ends: first-to-last insertion positions
    b.add(50, "a")
    b.add(60, "z")
    assert b.refresh() == b'* ESEARCH (TAG "S1") UID ADDTO (1 50 6 60)\r\n'
    # now a b c d f z = 50 10 40 20 30 60; expunge b and c (adjacent) and z
    out = contexts.before_expunge(b.view, [10, 40, 60])
    assert out == b'* ESEARCH (TAG "S1") UID REMOVEFROM (6 60 2 10,40)\r\n'
    assert b.view.search_contexts[0].members == [50, 20, 30]  # type: ignore[attr-defined]


def test_sort_context_message_numbers_reverse() -> None:
    b = Box(["b", "d", "f"])
    assert b.start("S2", "UNKEYWORD $Junk", uid=False, sort="REVERSE SUBJECT") == [30, 20, 10]
    b.add(40, "c")  # seq 4; f d c b
    assert b.refresh() == b'* ESEARCH (TAG "S2") ADDTO (3 4)\r\n'
    b.flag(20, "$Junk")  # d leaves: it was at position 2, message 2
    assert b.refresh() == b'* ESEARCH (TAG "S2") REMOVEFROM (2 2)\r\n'
    b.flag(20)  # and comes back
    assert b.refresh() == b'* ESEARCH (TAG "S2") ADDTO (2 2)\r\n'


def test_search_context_incremental_loads_only_changed() -> None:
    b = Box([f"s{i}" for i in range(20)])
    b.start("T", "SUBJECT s1")  # s1, s10..s19
    assert b.refresh() == b""  # nothing changed: nothing evaluated
    assert b.loads == []
    b.flag(30, "\\Seen")  # s2: flags changed, still no match
    assert b.refresh() == b""
    assert b.loads == ["s2"]  # one message re-read, not twenty
    b.add(210, "s1 again")
    assert b.refresh() == b'* ESEARCH (TAG "T") UID ADDTO (0 210)\r\n'
    assert b.loads == ["s1 again"]
    out = contexts.before_expunge(b.view, [20, 110])
    assert out == b'* ESEARCH (TAG "T") UID REMOVEFROM (0 20,110)\r\n'


def test_search_context_message_numbers_frozen() -> None:
    # RFC 5267 §4.3: message numbers in the program are evaluated when the command is received
    b = Box(["a", "b", "c"])
    assert b.start("N", "2:*", uid=False) == [20, 30]
    b.add(40, "d")
    assert b.refresh() == b""  # message 4 was not in "2:*" at command time
    b.flag(20, "\\Flagged")
    assert b.refresh() == b""
    b.view.saved = [10]
    b.start("D", "$ SUBJECT a", uid=False)
    b.add(50, "a")  # matches SUBJECT a, not the saved set of the command's time
    assert b.refresh() == b""


def test_time_relative_program_runs_in_full() -> None:
    b = Box(["a", "b", "c"])
    b.start("Y", "YOUNGER 100000 SUBJECT b")
    assert b.view.search_contexts[0].full  # type: ignore[attr-defined]
    b.add(40, "d")
    assert b.refresh() == b""
    assert sorted(b.loads) == ["a", "b", "c", "d"]  # re-run over everything


def test_limits_and_checks() -> None:
    b = Box(["a"])
    for i in range(contexts.MAX_CONTEXTS):
        b.start(f"L{i}", "ALL", sort="SUBJECT" if i % 2 else None)
    views = b.view.views()
    out = contexts.start(
        b.view,
        "L99",
        uid=True,
        criteria=crit("ALL"),
        charset=None,
        sort=None,
        found=views,
        views=views,
        saved=None,
    )
    assert out == b'* NO [NOUPDATE "L99"] Too many update contexts\r\n'
    with pytest.raises(Bad):
        contexts.check_tag(b.view, "L3")
    contexts.check_tag(b.view, "L99")
    with pytest.raises(Bad):
        contexts.check_return_options([SearchReturnOption("PARTIAL", "1:5"), SearchReturnOption("ALL")])
    contexts.check_return_options([SearchReturnOption("PARTIAL", "1:5"), SearchReturnOption("UPDATE")])
    contexts.cancel(b.view, ["L0", "L1", "nope"])
    assert len(contexts.live(b.view)) == contexts.MAX_CONTEXTS - 2


def test_views_helper_consistent() -> None:
    b = Box(["a", "b"])
    assert [v.seq for v in b.view.views()] == [1, 2]
    assert isinstance(b.view.views()[0], MessageView)
