import datetime as dt

import pytest

from mailhouse.message.parse import parse_message
from mailhouse.message.thread import (
    ThreadRecord,
    base_subject,
    base_subject_ex,
    format_threads,
    record_from_message,
    sort_ids,
    sort_key,
    thread_orderedsubject,
    thread_references,
)


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Re: [list] Fwd: Hello (fwd)", "Hello", True),
        ("[fwd: Re: test]", "test", True),
        ("Re:Re: re: foo", "foo", True),
        ("RE [x]: y", "y", True),
        ("[a][b] x", "x", False),
        ("[only]", "[only]", False),  # a blob is kept when nothing would remain
        ("  spaced \t  out ", "spaced out", False),
        ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", True),
        ("", "", False),
    ],
)
def test_base_subject(subject, base, reply):
    assert base_subject_ex(subject) == (base, reply)


def D(day):
    return dt.datetime(2024, 1, day, tzinfo=dt.UTC)


RECS = [
    ThreadRecord(1, "hello", "<1@x>", None, None, D(1)),
    ThreadRecord(2, "Re: hello", "<2@x>", "<1@x>", None, D(2)),
    ThreadRecord(3, "other", "<3@x>", None, None, D(3)),
    ThreadRecord(4, "Re: hello", "<4@x>", "<1@x> <2@x>", None, D(4)),
    ThreadRecord(5, "Re: hello", "<5@x>", None, "<1@x>", D(5)),  # In-Reply-To only
    ThreadRecord(6, "Re: missing", "<6@x>", "<zz@x>", None, D(6)),
    ThreadRecord(7, "Re: missing", "<7@x>", "<zz@x>", None, D(7)),
    ThreadRecord(8, "Re: other", "<8@x>", None, None, D(8)),
]


def test_references():
    # 2 and 5 reply to 1, 4 to 2; 6 and 7 share a missing parent → dummy kept at root with two
    # children; 8 is a reply by subject to 3 (RFC 5256 §4 step 5C).
    assert format_threads(thread_references(RECS)) == b"(1 (2 4)(5))(3 8)((6)(7))"


def test_orderedsubject():
    assert format_threads(thread_orderedsubject(RECS)) == b"(1 (2)(4)(5))(3 8)(6 7)"


def test_references_loops_and_duplicates():
    recs = [
        ThreadRecord(1, "a", "<a@x>", "<b@x>", None, D(1)),
        ThreadRecord(2, "b", "<b@x>", "<a@x>", None, D(2)),  # would make a loop: refused
        ThreadRecord(3, "c", "<a@x>", None, None, D(3)),  # duplicate Message-ID
    ]
    out = thread_references(recs)
    ids = format_threads(out)
    assert sorted(int(x) for x in ids.replace(b"(", b" ").replace(b")", b" ").split()) == [1, 2, 3]


def test_record_from_message(corpus):
    t = parse_message(corpus("groups.eml"))
    r = record_from_message(9, t)
    assert r.message_id == b"<groups@silly.example>" and r.in_reply_to == b"<parent@silly.example>"
    assert r.date == dt.datetime(
        1969, 2, 13, 23, 32, 54, tzinfo=dt.timezone(-dt.timedelta(hours=3, minutes=30))
    )


def _msg(frm, to, subj, date, cc=""):
    raw = f"From: {frm}\r\nTo: {to}\r\nCc: {cc}\r\nSubject: {subj}\r\nDate: {date}\r\n\r\nx\r\n".encode()
    return raw, parse_message(raw)


def test_sort_keys_and_sort():
    msgs = {
        1: _msg('"Zed" <a@x>', "b@x", "Re: beta", "Tue, 2 Jan 2024 00:00:00 +0000"),
        2: _msg("c@x", '"Al" <z@x>', "alpha", "Mon, 1 Jan 2024 23:00:00 -0200"),
        3: _msg("B@x", "y@x", "[fwd: Gamma]", "Wed, 3 Jan 2024 00:00:00 +0000"),
    }

    def key_of(m, c):
        raw, t = m
        return sort_key(c, raw, t, internaldate=D(1), size=len(raw))

    items = list(msgs.items())
    assert sort_ids(items, ["SUBJECT"], key_of) == [2, 1, 3]
    assert sort_ids(items, ["FROM"], key_of) == [1, 3, 2]
    assert sort_ids(items, ["DISPLAYFROM"], key_of) == [3, 2, 1]  # "b@x", "c@x", "zed"
    assert sort_ids(items, ["DISPLAYTO"], key_of) == [2, 1, 3]
    assert sort_ids(items, ["DATE"], key_of) == [1, 2, 3]  # compared in UTC: 2 is Jan 2 01:00Z
    assert sort_ids(items, ["REVERSE", "DATE"], key_of) == [3, 2, 1]
    assert sort_ids(items, ["ARRIVAL"], key_of) == [1, 2, 3]  # ties → id order
    assert sort_ids(items, ["CC", "REVERSE", "SIZE"], key_of) == [1, 2, 3]  # no Cc: by size, largest first
    assert base_subject("[fwd: Gamma]") == "Gamma"
    with pytest.raises(ValueError):
        sort_ids(items, ["BOGUS"], key_of)


def test_collate_is_unicode_casemap_titlecase_then_nfkd() -> None:
    from mailhouse.message.thread import collate

    # RFC 5051 §2: titlecase, so "[" and "_" sort after letters (as in Dovecot), and NFKD
    assert collate("[blob]") > collate("zebra") and collate("a_b") > collate("aZb")
    assert collate("été") == collate("ÉTÉ") and collate("Élody") < collate("f")
    assert collate("ﬁ") == "fi"  # NFKD after the (simple) titlecase mapping, which ﬁ has none of
