"""imapserver.query: SEARCH / SORT / THREAD evaluation and result responses, on in-memory views
built from the message corpus (tests/message/corpus and tests/imapserver/corpus)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from mailhouse.imapserver import query
from mailhouse.imapserver.query import BadCharset, MessageView, QueryError
from mailhouse.proto.imap.commands import SearchReturnOption, SortCriterion
from mailhouse.proto.imap.reader import Reader
from mailhouse.proto.imap.search import parse_search_program
from mailhouse.store.api import MessageRecord

HERE = Path(__file__).parent
CORPUS = sorted((HERE.parent / "message" / "corpus").glob("*.eml")) + sorted((HERE / "corpus").glob("*.eml"))
BASE_TS = dt.datetime(2024, 3, 1, 12, 0).timestamp()  # local time, like the server's date keys


def crit(text: str):
    return parse_search_program(Reader([text.encode()], True))


class Box:
    """A mailbox of corpus messages: UIDs 10, 20, 30... (gaps on purpose), seq 1..n."""

    def __init__(self, names: list[str] | None = None) -> None:
        files = [p for p in CORPUS if names is None or p.name in names]
        if names is not None:
            files.sort(key=lambda p: names.index(p.name))
        self.raw: dict[str, bytes] = {}
        self.views: list[MessageView] = []
        self.loads = 0
        for i, p in enumerate(files):
            data = p.read_bytes()
            key = p.name
            self.raw[key] = data
            flags = set()
            if i % 2 == 0:
                flags.add("\\Seen")
            if i % 3 == 0:
                flags.add("\\Flagged")
            if i == 1:
                flags.add("$Important")
            rec = MessageRecord(
                mailbox_id=1,
                uid=10 * (i + 1),
                modseq=100 + i,
                flags=frozenset(flags),
                internaldate=BASE_TS + 86400 * i,
                size=len(data),
                blob_key=key,
                saved=BASE_TS + 86400 * i + 60,
            )
            self.views.append(MessageView(seq=i + 1, record=rec, recent=i >= len(files) - 2))

    async def load(self, rec: MessageRecord) -> bytes:
        self.loads += 1
        return self.raw[rec.blob_key]

    def by_name(self, name: str) -> MessageView:
        return next(v for v in self.views if v.record.blob_key == name)

    def search(self, text: str, **kw) -> list[str]:
        found = asyncio.run(query.search(self.views, crit(text), load=self.load, **kw))
        return [v.record.blob_key for v in found]


@pytest.fixture
def box() -> Box:
    return Box()


# ------------------------------------------------------------------ cheap keys


def test_all_and_flags(box: Box) -> None:
    assert len(box.search("ALL")) == len(CORPUS)
    seen = box.search("SEEN")
    assert seen and all("\\Seen" in box.by_name(n).record.flags for n in seen)
    assert set(box.search("UNSEEN")) == set(box.raw) - set(seen)
    assert box.search("KEYWORD $important") == [box.views[1].record.blob_key]  # case-insensitive
    assert len(box.search("UNKEYWORD $Important")) == len(CORPUS) - 1
    assert box.loads == 0  # flags never load a message


def test_recent_new_old(box: Box) -> None:
    recent = [v.record.blob_key for v in box.views if v.recent]
    assert box.search("RECENT") == recent
    assert box.search("NEW") == [n for n in recent if "\\Seen" not in box.by_name(n).record.flags]
    assert len(box.search("OLD")) == len(CORPUS) - 2


def test_sequence_uid_and_star(box: Box) -> None:
    v = box.views
    assert box.search("2:3") == [v[1].record.blob_key, v[2].record.blob_key]
    assert box.search("*") == [v[-1].record.blob_key]
    assert box.search("UID 20,40:50") == [v[1].record.blob_key, v[3].record.blob_key, v[4].record.blob_key]
    assert box.search("UID 15") == []
    assert box.search("UID *") == [v[-1].record.blob_key]


def test_saved_result_dollar(box: Box) -> None:
    v = box.views
    # RFC 5182: "$" refers to the saved messages (stored as UIDs) in either numbering
    assert box.search("$", saved=[20, 30]) == [v[1].record.blob_key, v[2].record.blob_key]
    assert box.search("UID $", saved=[20]) == [v[1].record.blob_key]
    assert box.search("$") == []  # nothing saved yet
    assert box.search("NOT $ 1:3", saved=[20]) == [v[0].record.blob_key, v[2].record.blob_key]


def test_size_modseq_dates(box: Box) -> None:
    sizes = {n: len(b) for n, b in box.raw.items()}
    assert set(box.search("LARGER 1000")) == {n for n, s in sizes.items() if s > 1000}
    assert set(box.search("SMALLER 100")) == {n for n, s in sizes.items() if s < 100}
    assert box.search("MODSEQ 105") == [v.record.blob_key for v in box.views if v.record.modseq >= 105]
    assert box.search('MODSEQ "/flags/\\\\seen" all 105') == box.search("MODSEQ 105")
    # internal dates are BASE + i days, local time
    assert box.search("ON 2-Mar-2024") == [box.views[1].record.blob_key]
    assert box.search("BEFORE 2-Mar-2024") == [box.views[0].record.blob_key]
    assert len(box.search("SINCE 2-Mar-2024")) == len(CORPUS) - 1
    assert box.search("SAVEDON 3-Mar-2024") == [box.views[2].record.blob_key]
    assert len(box.search("SAVEDATESUPPORTED")) == len(CORPUS)
    assert box.loads == 0


def test_older_younger(box: Box) -> None:
    now = BASE_TS + 86400 * 3 + 10
    got = asyncio.run(query.search(box.views, crit("YOUNGER 86400"), load=box.load, now=now))
    assert [x.seq for x in got] == [v.seq for v in box.views[3:]]  # later ones are "in the future"
    got = asyncio.run(query.search(box.views, crit("OLDER 86400"), load=box.load, now=now))
    assert [x.seq for x in got] == [1, 2, 3]


def test_boolean_logic(box: Box) -> None:
    assert box.search("OR 1 2") == [box.views[0].record.blob_key, box.views[1].record.blob_key]
    assert box.search("NOT NOT 1") == [box.views[0].record.blob_key]
    assert box.search("(SEEN FLAGGED)") == [
        v.record.blob_key for v in box.views if {"\\Seen", "\\Flagged"} <= v.record.flags
    ]
    assert box.search("1 2") == []


# ------------------------------------------------------------------ message keys


def test_header_keys_decoded_case_insensitive(box: Box) -> None:
    assert box.search('FROM "jörg"') == ["8bit_headers.eml"]
    assert box.search('FROM "KELD JØRN"', charset="UTF-8") == ["encoded_words.eml"]
    assert box.search('TO "élody"', charset="UTF-8") == ["encoded_words.eml"]
    assert box.search('SUBJECT "AFTERNOON meeting"') == ["simple.eml"]
    assert "qp_body.eml" in box.search('SUBJECT "café"')
    assert box.search("HEADER Message-ID alt1@") == ["alternative_attach.eml"]
    # RFC 9051 §6.4.4: HEADER with an empty string matches every message with the field
    with_irt = box.search('HEADER In-Reply-To ""')
    assert "groups.eml" in with_irt and "thread_reply1.eml" in with_irt and "simple.eml" not in with_irt


def test_body_and_text_decoded(box: Box) -> None:
    assert box.search('BODY "straße"') == ["qp_body.eml"]  # quoted-printable, UTF-8, case folded
    assert box.search('BODY "CRÈME"') == ["b64_body.eml"]  # base64, ISO-8859-1
    assert box.search('BODY "quarterly plan"') == []  # subject only, not in the body
    assert set(box.search('TEXT "quarterly plan"')) == {
        "thread_root.eml",
        "thread_reply1.eml",
        "thread_reply2.eml",
        "thread_orphan.eml",
    }
    assert box.search("TEXT agreed") == ["thread_reply1.eml"]


def test_charset_handling(box: Box) -> None:
    # ISO-8859-1 needle: "café" in Latin-1 octets
    from mailhouse.proto.imap.search import SearchText

    got = asyncio.run(
        query.search(
            box.views, SearchText("BODY", "caf\xe9".encode("latin-1")), load=box.load, charset="ISO-8859-1"
        )
    )
    keys = {v.record.blob_key for v in got}
    assert {"qp_body.eml", "b64_body.eml"} <= keys and "simple.eml" not in keys
    with pytest.raises(BadCharset) as e:
        box.search("BODY x", charset="X-NO-SUCH-CHARSET")
    assert e.value.status == "NO" and e.value.code == "BADCHARSET (UTF-8 US-ASCII)"
    assert box.search("SUBJECT meeting", charset="US-ASCII") == ["simple.eml"]


def test_sent_dates(box: Box) -> None:
    assert box.search("SENTON 7-Feb-1994") == ["simple.eml"]  # header's own zone (-0800)
    assert box.search("SENTBEFORE 1-Jan-1970") == ["groups.eml"]
    assert "thread_reply2.eml" in box.search("SENTON 2-Jan-2024")  # 08:00 +0100, own zone


def test_cheap_keys_avoid_loading(box: Box) -> None:
    box.loads = 0
    assert box.search('1 BODY "straße"') == []
    assert box.loads == 1  # "1" rules out every other message before any load
    box.loads = 0
    box.search("UID 10 BODY xyz")
    assert box.loads == 1
    box.loads = 0
    box.search("OR SUBJECT a SUBJECT b")
    assert box.loads == len(CORPUS)  # each message loaded once for both keys (cache)


def test_unknown_key_is_bad(box: Box) -> None:
    from mailhouse.proto.imap.search import SearchFlagKey

    with pytest.raises(QueryError) as e:
        asyncio.run(query.search(box.views, SearchFlagKey("BOGUS"), load=box.load))
    assert e.value.status == "BAD"


def test_never_raises_on_any_corpus_message(box: Box) -> None:
    for key in (
        "TEXT zzz",
        "BODY zzz",
        "HEADER X-Nope zzz",
        "SENTSINCE 1-Jan-2000",
        "FROM a",
        "CC a",
        "BCC a",
    ):
        box.search(key)


# ------------------------------------------------------------------ result formats


def _found(box: Box, text: str) -> list[MessageView]:
    return asyncio.run(query.search(box.views, crit(text), load=box.load))


def test_plain_search_response(box: Box) -> None:
    found = _found(box, "2:4")
    assert query.format_search("A1", found, uid=False, return_options=None).data == b"* SEARCH 2 3 4\r\n"
    assert query.format_search("A1", found, uid=True, return_options=None).data == b"* SEARCH 20 30 40\r\n"
    assert query.format_search("A1", [], uid=False, return_options=None).data == b"* SEARCH\r\n"
    # RFC 7162 §3.1.5: MODSEQ of the highest returned message when the criteria used MODSEQ
    out = query.format_search("A1", found, uid=False, return_options=None, modseq=True)
    assert out.data == b"* SEARCH 2 3 4 (MODSEQ 103)\r\n"
    assert query.uses_modseq(crit("OR MODSEQ 5 SEEN")) and not query.uses_modseq(crit("SEEN"))


def R(*names: str, partial: str | None = None) -> tuple[SearchReturnOption, ...]:
    opts = [SearchReturnOption(n) for n in names]
    if partial:
        opts.append(SearchReturnOption("PARTIAL", partial))
    return tuple(opts)


def test_esearch_response(box: Box) -> None:
    found = _found(box, "2:4,6")
    out = query.format_search("A2", found, uid=False, return_options=R("MIN", "MAX", "COUNT", "ALL"))
    assert out.data == b'* ESEARCH (TAG "A2") MIN 2 MAX 6 ALL 2:4,6 COUNT 4\r\n'
    assert out.save is None
    out = query.format_search("A3", found, uid=True, return_options=())  # RETURN () == ALL
    assert out.data == b'* ESEARCH (TAG "A3") UID ALL 20,30,40,60\r\n'
    out = query.format_search("A4", [], uid=False, return_options=R("MIN", "COUNT"))
    assert out.data == b'* ESEARCH (TAG "A4") COUNT 0\r\n'
    out = query.format_search("A5", found, uid=True, return_options=R("COUNT"), modseq=True)
    assert out.data == b'* ESEARCH (TAG "A5") UID COUNT 4 MODSEQ 105\r\n'


def test_searchres_save(box: Box) -> None:
    found = _found(box, "2:4,6")
    out = query.format_search("S1", found, uid=False, return_options=R("SAVE"))
    assert out.data == b"" and out.save == [20, 30, 40, 60]  # RFC 5182 §2.4: no ESEARCH
    out = query.format_search("S2", found, uid=False, return_options=R("SAVE", "MIN"))
    assert out.save == [20] and out.data == b'* ESEARCH (TAG "S2") MIN 2\r\n'
    out = query.format_search("S3", found, uid=False, return_options=R("SAVE", "MIN", "MAX"))
    assert out.save == [20, 60]
    out = query.format_search("S4", found, uid=False, return_options=R("SAVE", "MIN", "COUNT"))
    assert out.save == [20, 30, 40, 60]


def test_partial(box: Box) -> None:
    found = _found(box, "ALL")
    n = len(found)
    out = query.format_search("P1", found, uid=True, return_options=R(partial="1:2"))
    assert out.data == b'* ESEARCH (TAG "P1") UID PARTIAL (1:2 10,20)\r\n'
    out = query.format_search("P2", found, uid=True, return_options=R(partial="-1:-2"))
    assert out.data == f'* ESEARCH (TAG "P2") UID PARTIAL (-1:-2 {10 * (n - 1)},{10 * n})\r\n'.encode()
    out = query.format_search("P3", found, uid=True, return_options=R(partial="500:600"))
    assert out.data == b'* ESEARCH (TAG "P3") UID PARTIAL (500:600 NIL)\r\n'


# ------------------------------------------------------------------ SORT


THREAD_NAMES = [
    "thread_reply2.eml",
    "thread_orphan.eml",
    "thread_root.eml",
    "simple.eml",
    "thread_reply1.eml",
]


def _sort(box: Box, *keys: str, search: str = "ALL") -> list[str]:
    criteria = []
    rev = False
    for k in keys:
        if k == "REVERSE":
            rev = True
            continue
        criteria.append(SortCriterion(k, rev))
        rev = False
    got = asyncio.run(query.sort(box.views, criteria, crit(search), load=box.load))
    return [v.record.blob_key for v in got]


def test_sort_keys() -> None:
    box = Box(THREAD_NAMES)
    assert _sort(box, "ARRIVAL") == THREAD_NAMES
    assert _sort(box, "REVERSE", "ARRIVAL") == THREAD_NAMES[::-1]
    assert _sort(box, "DATE") == [
        "simple.eml",
        "thread_root.eml",
        "thread_reply1.eml",
        "thread_reply2.eml",  # Tue 08:00 +0100 = 07:00 UTC
        "thread_orphan.eml",
    ]
    # SUBJECT uses the base subject: all "Quarterly plan" tie → sequence order
    assert _sort(box, "SUBJECT") == [
        "simple.eml",
        "thread_reply2.eml",
        "thread_orphan.eml",
        "thread_root.eml",
        "thread_reply1.eml",
    ]
    # FROM sorts on the addr-mailbox; DISPLAYFROM (RFC 5957) on the display name
    assert _sort(box, "FROM")[:2] == ["thread_reply2.eml", "thread_root.eml"]  # adams, carol
    assert _sort(box, "DISPLAYFROM")[:2] == ["thread_root.eml", "thread_reply1.eml"]  # Carol, Dave
    assert _sort(box, "SIZE", search="SEEN") == sorted(
        [n for n in THREAD_NAMES if "\\Seen" in box.by_name(n).record.flags], key=lambda n: len(box.raw[n])
    )


def test_sort_arrival_does_not_load() -> None:
    box = Box(THREAD_NAMES)
    _sort(box, "ARRIVAL", "SIZE")
    assert box.loads == 0


def test_sort_bad_criterion() -> None:
    box = Box(THREAD_NAMES)
    with pytest.raises(QueryError):
        asyncio.run(query.sort(box.views, [SortCriterion("COLOUR")], crit("ALL"), load=box.load))


def test_sort_responses() -> None:
    box = Box(THREAD_NAMES)
    ordered = asyncio.run(query.sort(box.views, [SortCriterion("DATE")], crit("ALL"), load=box.load))
    assert query.format_sort("T", ordered, uid=False, return_options=None).data == b"* SORT 4 3 5 1 2\r\n"
    # ESORT (RFC 5267 §3): MIN/MAX are first/last in sort order, ALL keeps the order
    out = query.format_sort("T2", ordered, uid=False, return_options=R("MIN", "MAX", "ALL", "COUNT"))
    assert out.data == b'* ESEARCH (TAG "T2") MIN 4 MAX 2 ALL 4,3,5,1:2 COUNT 5\r\n'
    out = query.format_sort("T3", ordered, uid=False, return_options=R(partial="2:3"))
    assert out.data == b'* ESEARCH (TAG "T3") PARTIAL (2:3 3,5)\r\n'


# ------------------------------------------------------------------ THREAD


def test_thread_references() -> None:
    box = Box(THREAD_NAMES)
    data = asyncio.run(query.thread(box.views, "REFERENCES", crit("ALL"), uid=False, load=box.load))
    # root(3) → reply1(5) → reply2(1); orphan(2) joins by subject under root; simple(4) alone
    assert data == b"(4)(3 (5 1)(2))"
    assert query.format_thread(data) == b"* THREAD (4)(3 (5 1)(2))\r\n"
    uid_data = asyncio.run(query.thread(box.views, "references", crit("ALL"), uid=True, load=box.load))
    assert uid_data == b"(40)(30 (50 10)(20))"


def test_thread_orderedsubject() -> None:
    box = Box(THREAD_NAMES)
    data = asyncio.run(query.thread(box.views, "ORDEREDSUBJECT", crit("ALL"), uid=False, load=box.load))
    assert data == b"(4)(3 (5)(1)(2))"  # RFC 5256 §3: the rest are children of the first


def test_thread_empty_and_unknown() -> None:
    box = Box(THREAD_NAMES)
    data = asyncio.run(query.thread(box.views, "REFERENCES", crit("UID 999"), uid=False, load=box.load))
    assert query.format_thread(data) == b"* THREAD\r\n"
    with pytest.raises(QueryError) as e:
        asyncio.run(query.thread(box.views, "JWZ", crit("ALL"), uid=False, load=box.load))
    assert e.value.status == "BAD"


def test_expunged_meanwhile_and_tuple_loader(box: Box) -> None:
    from mailhouse.message.parse import parse_message

    gone = box.views[0].record.blob_key

    async def load(rec: MessageRecord):
        if rec.blob_key == gone:
            raise FileNotFoundError(rec.blob_key)  # another session expunged it
        raw = box.raw[rec.blob_key]
        return raw, parse_message(raw)  # a cached (raw, tree) pair is accepted too

    found = asyncio.run(query.search(box.views, crit("TEXT a"), load=load))
    assert gone not in [v.record.blob_key for v in found] and found
    assert asyncio.run(query.search(box.views, crit("1"), load=load))[0].record.blob_key == gone  # index-only
    ordered = asyncio.run(query.sort(box.views, [SortCriterion("SUBJECT")], crit("ALL"), load=load))
    assert len(ordered) == len(box.views) - 1
    data = asyncio.run(query.thread(box.views, "REFERENCES", crit("ALL"), uid=True, load=load))
    assert b"(10)" not in data
