"""SEARCH FROM/TO/CC/BCC on addresses as written, and SORT/THREAD on the RFC 5256 §2.1 base
subject — Mailhouse against Dovecot 2.3 (the oracle) over real sockets, on the same corpus.

Issue 13 §1: the address keys match "the specified string in the … field" (RFC 9051 §6.4.4) —
display name (encoded-words decoded), local part, domain and the full ``local@domain`` — with
the field written as addresses (comments dropped, quoting normalised, groups), as Dovecot does.
SORT (SUBJECT) compares base subjects (Re:/Fwd:/[blob]/(fwd) removed, repeated, case-folded,
after RFC 2047 decoding) with arrival order breaking ties.

Both servers get the same CRLF octets in the same order; sequence numbers are compared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.imapserver.imap_wire import RawIMAP, fetch_items, numbers_of, thread_of

USER, PASSWORD = "oracle@example.test", "oracle-pw"
BASE_TS = int(dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC).timestamp())


def _msg(headers: str, body: str = "Body text.\r\n") -> bytes:
    return (headers.strip("\n").replace("\n", "\r\n") + "\r\n\r\n" + body).encode("utf-8")


CORPUS = [
    _msg(
        """From: "Doe, John" <john.doe@Example.COM>
To: Team: alice@example.org, Bob Builder <bob@example.net>;
Cc: undisclosed-recipients:;
Subject: Re: [list] Quarterly plan
Date: Mon, 03 Mar 2025 10:00:00 +0000
Message-ID: <m1@example.com>"""
    ),
    _msg(
        """From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@mueller.test>
To: "john..doe"@example.com
Subject: =?UTF-8?Q?RE=3A_Fwd=3A_quarterly_PLAN?=
Date: Tue, 04 Mar 2025 10:00:00 +0000
Message-ID: <m2@mueller.test>
In-Reply-To: <m1@example.com>
References: <m1@example.com>"""
    ),
    _msg(
        """From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>
To: A Group(Some people)
     :Chris Jones <c@(Chris's host.)public.example>,
         joe@example.org,
  John <jdoe@one.test> (my dear friend); (the end of the group)
Cc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;
Subject: [fwd: Lunch]
Date: Wed, 05 Mar 2025 10:00:00 +0000
Message-ID: <m3@silly.test>"""
    ),
    _msg(
        """From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>
To: Mary Smith <mary@x.test>, jdoe@one.test
Bcc: secret@hidden.test
Subject: lunch (fwd)
Date: Thu, 06 Mar 2025 10:00:00 +0000
Message-ID: <m4@vm1.ulg.ac.be>"""
    ),
    _msg(
        """From: =?UTF-8?B?w4lsb2R5?= =?UTF-8?B?IFZhbHTDqQ==?= <elody@valte.test>
To: <@relay.test:user@final.test>
Cc: "Sm\\"ith, Agent" <smith@q.test>
Subject: Re: RE: re:   Quarterly   plan
Date: Fri, 07 Mar 2025 10:00:00 +0000
Message-ID: <m5@valte.test>
References: <m1@example.com> <m2@mueller.test>"""
    ),
    _msg(
        """From: plain@simple.test
To: =?UTF-8?Q?=C3=89quipe?=: =?UTF-8?Q?Fr=C3=A9d=C3=A9ric?= <fred@equipe.test>;
Cc: "quoted name" <"quoted local"@weird.test>
Subject: [blob][other] Re: [x] lunch
Date: Sat, 08 Mar 2025 10:00:00 +0000
Message-ID: <m6@simple.test>"""
    ),
    _msg(
        """From: Keld =?ISO-8859-1?Q?J=F8rn?= Simonsen <keld@dkuug.dk>
To: undisclosed recipients: ;
Subject: Fw: [fwd: Re: lunch] (fwd)
Date: Sun, 09 Mar 2025 10:00:00 +0000
Message-ID: <m7@dkuug.dk>"""
    ),
    _msg(
        """From: Mixed Case <MiXeD@CaSe.TeSt>
To: bob@example.net
Subject: =?UTF-8?Q?=5Bblob=5D?= zebra
Date: Sun, 09 Mar 2025 11:00:00 +0000
Message-ID: <m8@case.test>"""
    ),
    _msg(
        """From: a@subj.test
Subject: Re:Fwd:[list] RE : zebra (fwd) (FWD)
Date: Sun, 09 Mar 2025 12:00:00 +0000"""
    ),
    _msg(
        """From: b@subj.test
Subject: =?UTF-8?Q?Re=3A_=C3=A9t=C3=A9?= =?UTF-8?Q?_plans?=
Date: Sun, 09 Mar 2025 13:00:00 +0000"""
    ),
    _msg(
        """From: c@subj.test
Subject: Re: [blob]
Date: Sun, 09 Mar 2025 14:00:00 +0000"""
    ),
    _msg(
        """From: d@subj.test
Subject: ete
Date: Sun, 09 Mar 2025 15:00:00 +0000"""
    ),
    _msg(
        """From: e@subj.test
Subject:
 Re:
\t[fwd: ZEBRA]
Date: Sun, 09 Mar 2025 16:00:00 +0000"""
    ),
    _msg(
        """From: f@subj.test
Date: Sun, 09 Mar 2025 17:00:00 +0000"""
    ),
    _msg(
        """From: g@subj.test
Subject: Re[2]: lunch
Date: Sun, 09 Mar 2025 18:00:00 +0000"""
    ),
    _msg(
        """From: h@subj.test
Subject: Fwd: Re:
Date: Sun, 09 Mar 2025 19:00:00 +0000"""
    ),
    _msg(
        """From: i@subj.test
Subject: [PATCH v2] [x]
Date: Sun, 09 Mar 2025 20:00:00 +0000"""
    ),
    _msg(
        """From: j@subj.test
Subject: =?UTF-8?B?W2Jsb2JdIFJlOiDDiVTDiQ==?=
Date: Sun, 09 Mar 2025 21:00:00 +0000"""
    ),
]

SEARCHES = [
    "FROM john",
    'FROM "john.doe@example.com"',
    'FROM "Doe, John"',
    'FROM "doe, john"',
    "FROM example.com",
    'FROM "jörg"',
    'FROM "Müller"',
    'FROM "jörg müller"',
    "FROM joerg@mueller.test",
    'FROM "pete@silly.test"',
    "FROM pete",
    "FROM nice",
    "FROM account",
    'FROM "andré"',
    'FROM "andré pirard"',
    "FROM pirard@vm1",
    "FROM ulg.ac.be",
    'FROM "élody"',
    'FROM "élody valté"',
    "FROM elody@valte.test",
    "FROM plain",
    "FROM plain@simple.test",
    'FROM "keld jørn"',
    "FROM keld@dkuug.dk",
    "FROM mixed@case.test",
    'FROM "mixed case"',
    "FROM <",
    "FROM @",
    'FROM "\\""',
    "TO team",
    "TO bob@example.net",
    'TO "bob builder"',
    "TO alice@example.org",
    'TO "a group"',
    "TO people",
    "TO c@public.example",
    "TO chris",
    "TO joe@example.org",
    "TO jdoe@one.test",
    "TO friend",
    'TO "john..doe"',
    'TO "john..doe@example.com"',
    "TO mary",
    "TO user@final.test",
    "TO relay.test",
    'TO "équipe"',
    'TO "frédéric"',
    "TO fred@equipe.test",
    "TO undisclosed",
    'TO ","',
    "TO ;",
    "TO :",
    "CC undisclosed-recipients",
    "CC hidden",
    "CC nobody",
    "CC smith@q.test",
    'CC "agent"',
    'CC "sm\\"ith"',
    'CC "quoted name"',
    'CC "quoted local"',
    'CC "quoted local@weird.test"',
    "CC weird.test",
    "BCC secret",
    "BCC secret@hidden.test",
    "BCC hidden.test",
    "OR FROM john TO john",
    "NOT FROM example",
]
SORTS = ["SUBJECT", "REVERSE SUBJECT", "SUBJECT REVERSE DATE", "FROM", "DISPLAYFROM", "TO", "CC"]
THREADS = ["ORDEREDSUBJECT", "REFERENCES"]


class Pair:
    """The corpus in a Dovecot INBOX and, in the same sequence order, a Mailhouse INBOX."""

    def __init__(self, dc: Any, mh_client: RawIMAP | None = None) -> None:
        self.raw = CORPUS
        for i, raw in enumerate(self.raw):
            dc.add_message(USER, raw, internal_date=BASE_TS + 3600 * i)
        self.dovecot = RawIMAP(dc.host, dc.imap_port)
        self.dovecot.cmd(f'LOGIN "{USER}" "{PASSWORD}"')
        self.dovecot.cmd("SELECT INBOX")
        by_hash = {hashlib.sha256(r).hexdigest(): i for i, r in enumerate(self.raw)}
        got = fetch_items(self.dovecot.cmd("FETCH 1:* (BODY.PEEK[])")[0])
        self.order = [by_hash[hashlib.sha256(got[s]["BODY[]"]).hexdigest()] for s in sorted(got)]
        assert sorted(self.order) == list(range(len(self.raw)))


@pytest.fixture(scope="module")
def pair(dovecot_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RawIMAP, RawIMAP]]:
    from tests.mailhouse_proc import PASSWORD as MH_PASSWORD
    from tests.mailhouse_proc import MailhouseProcess

    dc = dovecot_factory(users={USER: PASSWORD}, pop3_port=0)
    p = Pair(dc)
    mh = MailhouseProcess(
        tmp_path_factory.mktemp("addr-mh"), services=("imap",), extra="[auth]\nallow_plaintext = true\n"
    )
    mh.add_domain("example.org")
    mh.add_user("oracle@example.org", MH_PASSWORD)
    mh.start()
    try:
        c = RawIMAP(*mh.addr("imap"))
        c.cmd(f'LOGIN "oracle@example.org" "{MH_PASSWORD}"')
        for i in p.order:  # Dovecot's sequence order, the same internal dates
            d = dt.datetime.fromtimestamp(BASE_TS + 3600 * i, dt.UTC).strftime("%d-%b-%Y %H:%M:%S +0000")
            c.append("INBOX", p.raw[i], "", d)
        c.cmd("SELECT INBOX")
        yield p.dovecot, c
        c.close()
        p.dovecot.close()
    finally:
        mh.stop()


@pytest.mark.parametrize("criteria", SEARCHES)
def test_address_search_matches_dovecot(pair: tuple[RawIMAP, RawIMAP], criteria: str) -> None:
    dovecot, ours = pair
    cmd = f"SEARCH CHARSET UTF-8 {criteria}".encode()
    theirs = numbers_of(dovecot.cmd(cmd)[0], b"SEARCH")
    got = numbers_of(ours.cmd(cmd)[0], b"SEARCH")
    assert got == theirs, f"{criteria}: dovecot {theirs} ours {got}"


@pytest.mark.parametrize("criteria", SORTS)
def test_sort_matches_dovecot(pair: tuple[RawIMAP, RawIMAP], criteria: str) -> None:
    dovecot, ours = pair
    cmd = f"SORT ({criteria}) UTF-8 ALL"
    theirs = numbers_of(dovecot.cmd(cmd)[0], b"SORT")
    got = numbers_of(ours.cmd(cmd)[0], b"SORT")
    assert got == theirs, f"SORT {criteria}: dovecot {theirs} ours {got}"


@pytest.mark.parametrize("algorithm", THREADS)
def test_thread_matches_dovecot(pair: tuple[RawIMAP, RawIMAP], algorithm: str) -> None:
    dovecot, ours = pair
    cmd = f"THREAD {algorithm} UTF-8 ALL"
    assert thread_of(ours.cmd(cmd)[0]) == thread_of(dovecot.cmd(cmd)[0])
