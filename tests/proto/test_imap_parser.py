"""IMAP core: every command of RFC 9051 / RFC 3501 and the extensions, from realistic
client lines, each fed whole, byte by byte and with trailing data."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import pytest

from mailhouse.proto.imap import (
    NEED_DATA,
    AuthContinuation,
    Command,
    CommandError,
    ContinuationNeeded,
    Event,
    IdleDone,
    IMAPServerProtocol,
    SequenceSet,
)
from mailhouse.proto.imap import response as R
from mailhouse.proto.imap.commands import (
    Append,
    AppendMessage,
    Authenticate,
    CatenateText,
    CatenateURL,
    Compress,
    CopyMove,
    Create,
    Enable,
    Expunge,
    Fetch,
    FetchAtt,
    GenUrlAuth,
    GetMetadata,
    GetQuota,
    Id,
    List,
    Login,
    Lsub,
    MailboxArg,
    MailboxFilter,
    MailboxFilterKind,
    MultiSearch,
    NoArgs,
    Notify,
    NotifyEvent,
    NotifyEventGroup,
    QResyncParams,
    Rename,
    ResetKey,
    Search,
    SearchReturnOption,
    Section,
    Select,
    SetMetadata,
    SetQuota,
    Sort,
    SortCriterion,
    Status,
    Store,
    StoreMode,
    Thread,
    UrlFetch,
)
from mailhouse.proto.imap.search import (
    SearchAnd,
    SearchDate,
    SearchFlagKey,
    SearchHeader,
    SearchKeyword,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)
from mailhouse.proto.imap.sequence import SeqRange

# ----------------------------------------------------------------------------- helpers


def drain(p: IMAPServerProtocol) -> list[Event]:
    out: list[Event] = []
    while (ev := p.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def feed(chunks: Iterable[bytes], **kw: Any) -> list[Event]:
    p = IMAPServerProtocol(**kw)
    out: list[Event] = []
    for c in chunks:
        p.receive_data(c)
        out.extend(drain(p))
    return out


def three_ways(data: bytes, **kw: Any) -> list[Event]:
    """Events for ``data`` fed whole; asserts byte-by-byte and trailing-data runs agree."""
    whole = feed([data], **kw)
    bytewise = feed([data[i : i + 1] for i in range(len(data))], **kw)
    assert bytewise == whole
    trailing = feed([data + b"TT NOOP\r\nTU NO"], **kw)
    assert trailing[:-1] == whole
    last = trailing[-1]
    assert isinstance(last, Command) and last.tag == "TT" and last.name == "NOOP"
    return whole


def parse1(data: bytes, **kw: Any) -> Command:
    """The single Command in ``data`` (continuation requests allowed before it)."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    evs = [e for e in three_ways(data, **kw) if not isinstance(e, ContinuationNeeded)]
    assert len(evs) == 1, evs
    ev = evs[0]
    assert isinstance(ev, Command), ev
    return ev


def bad(data: bytes, **kw: Any) -> CommandError:
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    evs = [e for e in three_ways(data, **kw) if not isinstance(e, ContinuationNeeded)]
    assert len(evs) == 1 and isinstance(evs[0], CommandError), evs
    return evs[0]


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


# ----------------------------------------------------------------------------- commands

SIMPLE = ["CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "IDLE", "CHECK", "CLOSE", "UNSELECT", "NAMESPACE"]


@pytest.mark.parametrize("name", SIMPLE)
def test_argless(name: str) -> None:
    cmd = parse1(f"a001 {name.lower()}".encode())
    assert cmd == Command("a001", name, NoArgs())
    assert bad(f"a001 {name} extra".encode()).reply_bytes.startswith(b"a001 BAD")


CASES: list[tuple[bytes, str, object]] = [
    # RFC 9051 §6.2.2, RFC 4959 §3 SASL-IR
    (b"A001 AUTHENTICATE GSSAPI", "AUTHENTICATE", Authenticate("GSSAPI", None)),
    (
        b"a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
        "AUTHENTICATE",
        Authenticate("PLAIN", b"dGVzdAB0ZXN0AHRlc3Q="),
    ),
    (b"a AUTHENTICATE EXTERNAL =", "AUTHENTICATE", Authenticate("EXTERNAL", b"=")),
    # RFC 9051 §6.2.3; imaplib quotes, Thunderbird uses literals for odd passwords
    (b"a001 LOGIN SMITH SESAME", "LOGIN", Login(b"SMITH", b"SESAME")),
    (b'a001 LOGIN "fred@example.com" "p\\"w\\\\d"', "LOGIN", Login(b"fred@example.com", b'p"w\\d')),
    (b"a001 LOGIN {4+}\r\nfred {3}\r\np w", "LOGIN", Login(b"fred", b"p w")),
    (b"t1 ENABLE CONDSTORE QRESYNC utf8=accept", "ENABLE", Enable(("CONDSTORE", "QRESYNC", "UTF8=ACCEPT"))),
    (b"A142 SELECT INBOX", "SELECT", Select("INBOX")),
    (b"A142 select inbox", "SELECT", Select("INBOX")),
    (b"A932 EXAMINE blurdybloop", "EXAMINE", Select("blurdybloop", readonly=True)),
    (b'a SELECT "INBOX" (CONDSTORE)', "SELECT", Select("INBOX", condstore=True)),
    (
        b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        "SELECT",
        Select("INBOX", qresync=QResyncParams(67890007, 20050715194045000, seq("41,43:211,214:541"))),
    ),
    (
        b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
        b"15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
        "SELECT",
        Select(
            "INBOX",
            qresync=QResyncParams(
                67890007,
                90060115194045000,
                seq("1:29997"),
                (
                    seq("5000,7500,9000,9990:9999"),
                    seq("15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"),
                ),
            ),
        ),
    ),
    (b"A003 CREATE owatagusiam/", "CREATE", Create("owatagusiam/")),
    (
        b't1 CREATE "Important Messages" (USE (\\Important))',
        "CREATE",
        Create("Important Messages", ("\\Important",)),
    ),
    (b"A683 DELETE blurdybloop", "DELETE", MailboxArg("blurdybloop")),
    (b"A685 RENAME Foo Zowie", "RENAME", Rename("Foo", "Zowie")),
    (b'A002 SUBSCRIBE "#news.comp.mail.mime"', "SUBSCRIBE", MailboxArg("#news.comp.mail.mime")),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime", "UNSUBSCRIBE", MailboxArg("#news.comp.mail.mime")),
    (b'A101 LIST "" ""', "LIST", List("", ("",))),
    (b'A682 LIST "" *', "LIST", List("", ("*",))),
    (b"A202 LIST ~/Mail/ %", "LIST", List("~/Mail/", ("%",))),
    (b'A02 LIST (SUBSCRIBED) "" "*"', "LIST", List("", ("*",), ("SUBSCRIBED",), extended=True)),
    (
        b'A03 LIST () "" ("foo" "bar/%") RETURN (CHILDREN)',
        "LIST",
        List("", ("foo", "bar/%"), (), ("CHILDREN",), extended=True),
    ),
    (
        b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
        "LIST",
        List("", ("%",), (), (), ("MESSAGES", "UNSEEN"), extended=True),
    ),
    (
        b't1 LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE SUBSCRIBED)',
        "LIST",
        List("", ("*",), ("SPECIAL-USE",), ("SPECIAL-USE", "SUBSCRIBED"), extended=True),
    ),
    (b'A002 LSUB "#news." "comp.mail.*"', "LSUB", Lsub("#news.", "comp.mail.*")),
    (
        b"A042 STATUS blurdybloop (UIDNEXT MESSAGES size highestmodseq DELETED APPENDLIMIT)",
        "STATUS",
        Status("blurdybloop", ("UIDNEXT", "MESSAGES", "SIZE", "HIGHESTMODSEQ", "DELETED", "APPENDLIMIT")),
    ),
    (b"A202 EXPUNGE", "EXPUNGE", Expunge()),
    (b"A202 UID EXPUNGE 3000:3002", "UID EXPUNGE", Expunge(seq("3000:3002"))),
    (b'a GETQUOTA ""', "GETQUOTA", GetQuota("")),
    (b"G GETQUOTAROOT INBOX", "GETQUOTAROOT", MailboxArg("INBOX")),
    (
        b'S SETQUOTA "" (STORAGE 512 message 100)',
        "SETQUOTA",
        SetQuota("", (("STORAGE", 512), ("MESSAGE", 100))),
    ),
    (b"a023 ID NIL", "ID", Id(None)),
    (
        b'a023 ID ("name" "sodr" "version" "19.34" "vendor" NIL)',
        "ID",
        Id(((b"name", b"sodr"), (b"version", b"19.34"), (b"vendor", None))),
    ),
    (b"a ID ()", "ID", Id(())),
    (b"a COMPRESS deflate", "COMPRESS", Compress("DEFLATE")),
    (b'a GETMETADATA "" /shared/comment', "GETMETADATA", GetMetadata("", ("/shared/comment",))),
    (
        b"a GETMETADATA (MAXSIZE 1024 DEPTH infinity) INBOX (/private/comment /shared/comment)",
        "GETMETADATA",
        GetMetadata("INBOX", ("/private/comment", "/shared/comment"), 1024, "INFINITY"),
    ),
    (
        b'a SETMETADATA INBOX (/private/comment "My new comment" /shared/x NIL)',
        "SETMETADATA",
        SetMetadata("INBOX", (("/private/comment", b"My new comment"), ("/shared/x", None))),
    ),
    (
        b"a SETMETADATA INBOX (/private/comment {6+}\r\nline\r\n)",
        "SETMETADATA",
        SetMetadata("INBOX", (("/private/comment", b"line\r\n"),)),
    ),
    (b"a NOTIFY NONE", "NOTIFY", Notify(True)),
    (
        b"a NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to subject)]) "
        b"MessageExpunge)) (subtree Lists (MessageNew MessageExpunge messageNew)) (personal NONE)",
        "NOTIFY",
        Notify(
            False,
            True,
            (
                NotifyEventGroup(
                    MailboxFilter(MailboxFilterKind.SELECTED),
                    (
                        NotifyEvent(
                            "MessageNew",
                            (
                                FetchAtt("UID"),
                                FetchAtt(
                                    "BODY.PEEK", Section((), "HEADER.FIELDS", ("from", "to", "subject"))
                                ),
                            ),
                        ),
                        NotifyEvent("MessageExpunge"),
                    ),
                ),
                NotifyEventGroup(
                    MailboxFilter(MailboxFilterKind.SUBTREE, ("Lists",)),
                    (NotifyEvent("MessageNew"), NotifyEvent("MessageExpunge"), NotifyEvent("MessageNew")),
                ),
                NotifyEventGroup(MailboxFilter(MailboxFilterKind.PERSONAL), ()),
            ),
        ),
    ),
    (
        b'a GENURLAUTH "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred" INTERNAL',
        "GENURLAUTH",
        GenUrlAuth(((b"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred", "INTERNAL"),)),
    ),
    (b"a RESETKEY", "RESETKEY", ResetKey(None)),
    (b"a RESETKEY INBOX INTERNAL", "RESETKEY", ResetKey("INBOX", ("INTERNAL",))),
    (
        b'a URLFETCH "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a"',
        "URLFETCH",
        UrlFetch((b"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a",)),
    ),
    (b"a UNAUTHENTICATE", "UNAUTHENTICATE", NoArgs()),
    (b"A003 COPY 2:4 MEETING", "COPY", CopyMove(False, seq("2:4"), "MEETING")),
    (b'a UID COPY 1:3,7 "Saved Messages"', "UID COPY", CopyMove(True, seq("1:3,7"), "Saved Messages")),
    (b"a UID MOVE 42:69 foo", "UID MOVE", CopyMove(True, seq("42:69"), "foo")),
    (b"a MOVE $ Trash", "MOVE", CopyMove(False, seq("$"), "Trash")),
]


@pytest.mark.parametrize(("line", "name", "args"), CASES, ids=[c[0][:40].decode() for c in CASES])
def test_command(line: bytes, name: str, args: object) -> None:
    cmd = parse1(line)
    assert cmd.name == name
    assert cmd.args == args


def test_mailbox_mutf7_and_utf8() -> None:
    # RFC 3501 §5.1.3 example
    cmd = parse1(b"a SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-")
    assert cmd.args == Select("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e")
    # invalid MUTF-7 → BAD (no second spelling of a name)
    assert b"modified UTF-7" in bad(b"a SELECT &Jjo!").reply_bytes
    assert bad(b"a CREATE &AGE-").reply_bytes.startswith(b"a BAD")  # "a" encoded in base64
    # 8-bit is not allowed without UTF8=ACCEPT, allowed with it (RFC 6855 §3)
    assert bad('a SELECT "Entwürfe"'.encode()).reply_bytes.startswith(b"a BAD")
    cmd = parse1('a SELECT "Entwürfe"'.encode(), utf8_enabled=True)
    assert cmd.args == Select("Entwürfe")
    # in UTF-8 mode "&" is just "&"
    assert parse1(b"a SELECT &Jjo-", utf8_enabled=True).args == Select("&Jjo-")


def test_append_rfc9051_example() -> None:
    msg = (
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
        b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
        b"Subject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
    )
    data = (
        b'A003 APPEND saved-messages (\\Seen) "07-Feb-1994 21:52:25 -0800" {%d}\r\n' % len(msg)
        + msg
        + b"\r\n"
    )
    evs = three_ways(data)
    assert evs[0] == ContinuationNeeded(b"+ Ready for literal data\r\n")
    cmd = evs[1]
    assert isinstance(cmd, Command) and cmd.name == "APPEND"
    tz = datetime.timezone(-datetime.timedelta(hours=8))
    assert cmd.args == Append(
        "saved-messages",
        (AppendMessage(("\\Seen",), datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz), msg),),
    )


def test_append_variants() -> None:
    assert parse1(b"a APPEND INBOX {3+}\r\nabc").args == Append("INBOX", (AppendMessage(data=b"abc"),))
    assert parse1(b'a APPEND INBOX " 7-Feb-1994 01:02:03 +0000" {0}\r\n\r\n').args == Append(
        "INBOX",
        (AppendMessage(internal_date=datetime.datetime(1994, 2, 7, 1, 2, 3, tzinfo=datetime.UTC), data=b""),),
    )
    # RFC 3516 literal8 with NUL
    assert parse1(b"a APPEND INBOX (\\seen \\Draft $Forwarded) ~{3}\r\na\x00b").args == Append(
        "INBOX", (AppendMessage(("\\Seen", "\\Draft", "$Forwarded"), data=b"a\x00b", binary=True),)
    )
    # MULTIAPPEND (RFC 3502 §6.3.11)
    cmd = parse1(b"A003 APPEND saved-messages (\\Seen) {3}\r\nabc (\\Seen) {4}\r\nwxyz")
    assert cmd.args == Append(
        "saved-messages", (AppendMessage(("\\Seen",), data=b"abc"), AppendMessage(("\\Seen",), data=b"wxyz"))
    )
    # CATENATE (RFC 4469 §4)
    cmd = parse1(
        b'A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;'
        b'section=HEADER" TEXT {4}\r\n\r\n\r\n URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME")'
    )
    assert cmd.args == Append(
        "Drafts",
        (
            AppendMessage(
                ("\\Seen", "\\Draft", "$MDNSent"),
                catenate=(
                    CatenateURL(b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"),
                    CatenateText(b"\r\n\r\n"),
                    CatenateURL(b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME"),
                ),
            ),
        ),
    )
    # RFC 6855 §4
    assert parse1(b"a APPEND INBOX UTF8 (~{2+}\r\nhi)").args == Append(
        "INBOX", (AppendMessage(data=b"hi", binary=True, utf8=True),)
    )
    # NUL in a normal literal is invalid (CHAR8)
    assert bad(b"a APPEND INBOX {3}\r\na\x00b").reply_bytes.startswith(b"a BAD")
    assert bad(b"a APPEND INBOX").reply_bytes.startswith(b"a BAD")
    assert bad(b'a APPEND INBOX "32-Feb-1994 01:02:03 +0000" {0}\r\n\r\n').reply_bytes.startswith(b"a BAD")


# ----------------------------------------------------------------------------- FETCH


def _fetch(line: bytes) -> Fetch:
    cmd = parse1(line)
    assert isinstance(cmd.args, Fetch)
    return cmd.args


def test_fetch_thunderbird_and_macros() -> None:
    f = _fetch(b"5 UID fetch 1:* (FLAGS)")  # Thunderbird
    assert f == Fetch(True, SequenceSet((SeqRange(1, None),)), (FetchAtt("UID"), FetchAtt("FLAGS")))
    f = _fetch(b"A654 FETCH 2:4 all")
    assert f.macro == "ALL" and [i.name for i in f.items] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
    ]
    assert _fetch(b"a FETCH 1 FAST").macro == "FAST"
    assert [i.name for i in _fetch(b"a FETCH 1 FULL").items][-1] == "BODY"
    assert _fetch(b"a FETCH 1 BODYSTRUCTURE").items == (FetchAtt("BODYSTRUCTURE"),)


def test_fetch_items() -> None:
    # mbsync
    f = _fetch(
        b"7 UID FETCH 1:4294967295 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-TUID MESSAGE-ID)])"
    )
    assert f.items == (
        FetchAtt("UID"),
        FetchAtt("FLAGS"),
        FetchAtt("RFC822.SIZE"),
        FetchAtt("BODY.PEEK", Section((), "HEADER.FIELDS", ("X-TUID", "MESSAGE-ID"))),
    )
    assert f.items[3].peek
    # offlineimap
    f = _fetch(b"GEDI3 UID FETCH 1,3:5 (FLAGS BODY.PEEK[] INTERNALDATE)")
    assert f.items[2] == FetchAtt("BODY.PEEK", Section())
    f = _fetch(
        b"a FETCH 12 (ENVELOPE BODY RFC822 RFC822.HEADER RFC822.TEXT MODSEQ BODY[1.2.HEADER] BODY[3.MIME] "
        b"BODY[4.2.TEXT]<0.2048> BODY[HEADER.FIELDS.NOT (Received)] BODY[TEXT] BODY[1] BINARY[1.2] "
        b"BINARY.PEEK[]<10.5> BINARY.SIZE[3] EMAILID)"
    )
    assert f.items == (
        FetchAtt("ENVELOPE"),
        FetchAtt("BODY"),
        FetchAtt("RFC822"),
        FetchAtt("RFC822.HEADER"),
        FetchAtt("RFC822.TEXT"),
        FetchAtt("MODSEQ"),
        FetchAtt("BODY", Section((1, 2), "HEADER")),
        FetchAtt("BODY", Section((3,), "MIME")),
        FetchAtt("BODY", Section((4, 2), "TEXT"), (0, 2048)),
        FetchAtt("BODY", Section((), "HEADER.FIELDS.NOT", ("Received",))),
        FetchAtt("BODY", Section((), "TEXT")),
        FetchAtt("BODY", Section((1,))),
        FetchAtt("BINARY", Section((1, 2))),
        FetchAtt("BINARY.PEEK", Section(), (10, 5)),
        FetchAtt("BINARY.SIZE", Section((3,))),
        FetchAtt("EMAILID"),
    )
    assert str(f.items[9].section) == "HEADER.FIELDS.NOT (Received)"
    # RFC 7162 §3.2.6 example
    f = _fetch(b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert f.changedsince == 12345 and f.vanished
    assert _fetch(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)").changedsince == 12345


@pytest.mark.parametrize(
    "line",
    [
        b"a FETCH 1 (FLAGS",
        b"a FETCH 1 (FOO)",
        b"a FETCH 1 BODY[MIME]",
        b"a FETCH 1 BINARY[HEADER]",
        b"a FETCH 1 BODY[1.2.FOO]",
        b"a FETCH 1 BODY[]<0.0>",
        b"a FETCH 0 FLAGS",
        b"a FETCH 1:2:3 FLAGS",
        b"a FETCH 1 (FLAGS) (VANISHED)",
        b"a UID FETCH 1 (FLAGS) (VANISHED)",
        b"a FETCH 4294967296 FLAGS",
    ],
)
def test_fetch_bad(line: bytes) -> None:
    assert bad(line).reply_bytes.startswith(b"a BAD ")


# ----------------------------------------------------------------------------- STORE


def test_store() -> None:
    cmd = parse1(b"A003 STORE 2:4 +FLAGS (\\Deleted)")
    assert cmd.args == Store(False, seq("2:4"), StoreMode.ADD, False, ("\\Deleted",))
    cmd = parse1(b"a UID STORE 1:3 -FLAGS.SILENT \\seen $Junk")
    assert cmd.args == Store(True, seq("1:3"), StoreMode.REMOVE, True, ("\\Seen", "$Junk"))
    cmd = parse1(b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)")
    assert cmd.args == Store(False, seq("7,5,9"), StoreMode.ADD, True, ("\\Deleted",), 320162338)
    cmd = parse1(b"a STORE 1 FLAGS ()")
    assert cmd.args == Store(False, seq("1"), StoreMode.REPLACE, False, ())
    assert bad(b"a STORE 1 +FLAGZ (\\Seen)").reply_bytes.startswith(b"a BAD")


# ----------------------------------------------------------------------------- SEARCH / SORT / THREAD


def _search(line: bytes, **kw: Any) -> Search:
    cmd = parse1(line, **kw)
    assert isinstance(cmd.args, Search)
    return cmd.args


def test_search_rfc9051_examples() -> None:
    s = _search(b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert s.return_options == (SearchReturnOption("MIN"), SearchReturnOption("COUNT"))
    assert s.criteria == SearchAnd(
        (
            SearchFlagKey("FLAGGED"),
            SearchDate("SINCE", datetime.date(1994, 2, 1)),
            SearchNot(SearchText("FROM", b"Smith")),
        )
    )
    s = _search(b"A284 SEARCH CHARSET UTF-8 TEXT {12}\r\n\xd0\xbd\xd0\xb5\xd1\x81\xd0\xbe\xd1\x82\xd1\x8f")
    assert s.charset == "UTF-8" and s.criteria == SearchText("TEXT", "несотя".encode())
    s = _search(b"A285 SEARCH RETURN () UID 1:*")
    assert s.return_options == () and s.criteria == SearchSequence(seq("1:*"), uid=True)


def test_search_keys_all() -> None:
    s = _search(
        b"a UID SEARCH ALL ANSWERED BCC x BEFORE 1-Jan-2000 BODY y CC z DELETED DRAFT FLAGGED FROM f "
        b'HEADER Message-ID "<x@y>" KEYWORD $Junk LARGER 100 NEW NOT SEEN OLD ON "01-Jan-2000" '
        b"OR SEEN UNSEEN RECENT SEEN SENTBEFORE 1-Jan-2000 SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 "
        b"SINCE 1-Jan-2000 SMALLER 5 SUBJECT s TEXT t TO u UID 1:5 UNANSWERED UNDELETED UNDRAFT "
        b"UNFLAGGED UNKEYWORD foo UNSEEN 1,2:* (SEEN FLAGGED) MODSEQ 620162338 "
        b'MODSEQ "/flags/\\\\draft" all 620162338 $ OLDER 3600'
    )
    assert s.uid
    assert isinstance(s.criteria, SearchAnd)
    keys = s.criteria.keys
    assert SearchHeader("Message-ID", b"<x@y>") in keys
    assert SearchKeyword("$Junk") in keys and SearchKeyword("foo", True) in keys
    assert SearchSize("LARGER", 100) in keys
    assert SearchOr(SearchFlagKey("SEEN"), SearchFlagKey("UNSEEN")) in keys
    assert SearchAnd((SearchFlagKey("SEEN"), SearchFlagKey("FLAGGED"))) in keys
    assert SearchModSeq(620162338) in keys
    assert SearchModSeq(620162338, b"/flags/\\draft", "ALL") in keys
    assert SearchSequence(seq("$")) in keys
    assert len(keys) == 41


def test_search_esearch_options() -> None:
    s = _search(b"a UID SEARCH RETURN (SAVE MIN) FROM smith")
    assert s.return_options == (SearchReturnOption("SAVE"), SearchReturnOption("MIN"))
    s = _search(b"a SEARCH RETURN (PARTIAL -1:-100 COUNT) UNSEEN")
    assert s.return_options == (SearchReturnOption("PARTIAL", "-1:-100"), SearchReturnOption("COUNT"))
    s = _search(b"a SEARCH RETURN (CONTEXT UPDATE) SEEN")
    assert s.return_options == (SearchReturnOption("CONTEXT"), SearchReturnOption("UPDATE"))
    assert bad(b"a SEARCH RETURN (BOGUS) SEEN").reply_bytes.startswith(b"a BAD")
    assert bad(b"a SEARCH FOO").reply_bytes.startswith(b"a BAD")
    assert bad(b"a SEARCH").reply_bytes.startswith(b"a BAD")
    assert bad(b"a SEARCH SINCE 31-Feb-2020").reply_bytes.startswith(b"a BAD")


def test_multimailbox_esearch() -> None:
    cmd = parse1(b'tag ESEARCH IN (mailboxes "folder1" subtree-one "folder2") RETURN (COUNT) unseen')
    assert cmd.args == MultiSearch(
        (
            MailboxFilter(MailboxFilterKind.MAILBOXES, ("folder1",)),
            MailboxFilter(MailboxFilterKind.SUBTREE_ONE, ("folder2",)),
        ),
        SearchFlagKey("UNSEEN"),
        None,
        (SearchReturnOption("COUNT"),),
    )


def test_sort_thread() -> None:
    cmd = parse1(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994")
    assert cmd.args == Sort(
        False, (SortCriterion("SUBJECT"),), "UTF-8", SearchDate("SINCE", datetime.date(1994, 2, 1))
    )
    cmd = parse1(b"A283 UID SORT (SUBJECT REVERSE DATE displayfrom) UTF-8 ALL")
    assert cmd.args == Sort(
        True,
        (SortCriterion("SUBJECT"), SortCriterion("DATE", True), SortCriterion("DISPLAYFROM")),
        "UTF-8",
        SearchFlagKey("ALL"),
    )
    cmd = parse1(b"A284 SORT RETURN (MIN COUNT) (DISPLAYTO) US-ASCII OR SEEN DELETED")
    assert isinstance(cmd.args, Sort) and cmd.args.return_options == (
        SearchReturnOption("MIN"),
        SearchReturnOption("COUNT"),
    )
    cmd = parse1(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000")
    assert cmd.args == Thread(
        False, "ORDEREDSUBJECT", "UTF-8", SearchDate("SINCE", datetime.date(2000, 3, 5))
    )
    assert parse1(b'A284 UID THREAD REFERENCES US-ASCII TEXT "gewp"').name == "UID THREAD"
    assert bad(b"a SORT () UTF-8 ALL").reply_bytes.startswith(b"a BAD")
    assert bad(b"a SORT (WEIGHT) UTF-8 ALL").reply_bytes.startswith(b"a BAD")


# ----------------------------------------------------------------------------- framing


def test_literal_continuation_sequence() -> None:
    evs = three_ways(b"a LOGIN {4}\r\nfred {6}\r\nsecret\r\n")
    assert evs == [
        ContinuationNeeded(),
        ContinuationNeeded(),
        Command("a", "LOGIN", Login(b"fred", b"secret")),
    ]


def test_continuation_emitted_before_literal_arrives() -> None:
    p = IMAPServerProtocol()
    p.receive_data(b"a LOGIN {4}\r\n")
    assert p.next_event() == ContinuationNeeded(b"+ Ready for literal data\r\n")
    assert p.next_event() is NEED_DATA
    p.receive_data(b"fred pw\r\n")
    assert p.next_event() == Command("a", "LOGIN", Login(b"fred", b"pw"))


def test_sasl_mode() -> None:
    p = IMAPServerProtocol()
    p.receive_data(b"a AUTHENTICATE PLAIN\r\nAGZyZWQAcHc=\r\nb NOOP\r\n")
    assert p.next_event() == Command("a", "AUTHENTICATE", Authenticate("PLAIN", None))
    p.begin_auth_continuation("a")
    assert p.next_event() == AuthContinuation(b"AGZyZWQAcHc=")
    assert p.next_event() == Command("b", "NOOP", NoArgs())


def test_idle_mode() -> None:
    p = IMAPServerProtocol()
    p.receive_data(b"a IDLE\r\ndone\r\nb IDLE\r\nc NOOP\r\nd NOOP\r\n")
    assert p.next_event() == Command("a", "IDLE", NoArgs())
    p.begin_idle("a")
    assert p.next_event() == IdleDone()
    assert p.next_event() == Command("b", "IDLE", NoArgs())
    p.begin_idle("b")
    assert p.next_event() == CommandError("b", b"b BAD Expected DONE\r\n")
    assert p.next_event() == Command("d", "NOOP", NoArgs())


def test_take_buffered_after_starttls() -> None:
    p = IMAPServerProtocol()
    p.receive_data(b"a STARTTLS\r\nb LOGIN injected pw\r\n")
    assert p.next_event() == Command("a", "STARTTLS", NoArgs())
    assert p.buffered_octets() > 0
    assert p.take_buffered() == b"b LOGIN injected pw\r\n"
    assert p.next_event() is NEED_DATA


@pytest.mark.parametrize(
    "tag",
    [b"a", b"A0001", b"x.y-z_1", b"]", b"!#&'"],
)
def test_tags(tag: bytes) -> None:
    assert parse1(tag + b" NOOP").tag == tag.decode()


@pytest.mark.parametrize("line", [b"+ NOOP", b"a+ NOOP", b"(a NOOP", b"a%b NOOP", b"* NOOP", b'"a" NOOP'])
def test_bad_tags(line: bytes) -> None:
    err = bad(line)
    assert err.tag is None and err.reply_bytes.startswith(b"* BAD ")


def test_empty_and_garbage_lines() -> None:
    assert bad(b"").reply_bytes.startswith(b"* BAD")
    assert bad(b"a").reply_bytes.startswith(b"a BAD")
    assert bad(b"a  NOOP").reply_bytes.startswith(b"a BAD")
    assert bad(b"a NOOP\rx").reply_bytes.startswith(b"a BAD")
    assert bad(b"a UID NOOP").reply_bytes.startswith(b"a BAD")


# ----------------------------------------------------------------------------- sequence sets


def test_sequence_resolve_never_expands() -> None:
    s = seq("1:4294967295")
    assert s.resolve(4294967295) == ((1, 4294967295),)
    assert s.contains(4000000000, 4294967295)
    s = seq("9:*,1:5,7,3,6")
    assert s.resolve(20) == ((1, 7), (9, 20))
    assert list(seq("4:2,*").iter_numbers(10)) == [2, 3, 4, 10]
    assert seq("*:4").resolve(2) == ((2, 2),)
    assert seq("1:*").resolve(0) == ()
    assert seq("5").contains(5, 3) and not seq("5").contains(4, 3)
    assert seq("5:7").highest(3) == 7
    assert str(seq("1:5,7,9:*")) == "1:5,7,9:*"
    assert str(SequenceSet.from_numbers([5, 1, 2, 3, 9, 10])) == "1:3,5,9:10"
    saved = seq("$")
    assert saved.saved
    with pytest.raises(ValueError):
        saved.resolve(5)
    assert saved.with_saved(seq("2,4")).resolve(5) == ((2, 2), (4, 4))
    for text in ["", "0", "1:", ":1", "1,,2", "a", "1:2:3", "4294967296", "01"]:
        with pytest.raises(ValueError):
            SequenceSet.parse(text)


# ----------------------------------------------------------------------------- response serialiser


def test_response_helpers() -> None:
    assert R.tagged("A1", "OK", "done", "READ-WRITE") == b"A1 OK [READ-WRITE] done\r\n"
    assert R.tagged("A1", "NO", "evil\r\n* 1 EXISTS") == b"A1 NO evil  * 1 EXISTS\r\n"
    with pytest.raises(ValueError):
        R.tagged("a b", "OK", "x")
    assert R.untagged_status("OK", "Still here", "UIDNEXT 4392") == b"* OK [UIDNEXT 4392] Still here\r\n"
    assert R.continuation("Ready for literal data") == b"+ Ready for literal data\r\n"
    assert R.encode_value(None) == b"NIL"
    assert R.encode_value("a b") == b'"a b"'
    assert R.encode_value('q"\\') == b'"q\\"\\\\"'
    assert R.encode_value("a\r\nb") == b"{4}\r\na\r\nb"
    assert R.encode_value("x" * 2000).startswith(b"{2000}\r\n")
    assert R.encode_value("é") == b"{2}\r\n\xc3\xa9"
    assert R.encode_value("é", utf8=True) == b'"\xc3\xa9"'
    assert R.encode_value(R.Binary(b"a\0b")) == b"~{3}\r\na\x00b"
    assert R.encode_value([1, "x", [None, R.Atom("\\Seen")]]) == b'(1 "x" (NIL \\Seen))'
    assert R.astring("INBOX") == b"INBOX" and R.astring("nil") == b'"nil"' and R.astring("") == b'""'
    assert R.mailbox("台北") == b"&U,BTFw-"
    assert R.mailbox("台北", utf8=True) == '"台北"'.encode()
    assert R.recent(3, rev2=True) == b"" and R.recent(3) == b"* 3 RECENT\r\n"
    assert (
        R.status("INBOX", [("MESSAGES", 2), ("RECENT", 1)], rev2=True) == b"* STATUS INBOX (MESSAGES 2)\r\n"
    )
    assert (
        R.list_response(["\\HasNoChildren"], "/", "Sent Items")
        == b'* LIST (\\HasNoChildren) "/" "Sent Items"\r\n'
    )
    assert (
        R.list_response([], "/", "INBOX", extended=[("CHILDINFO", ["SUBSCRIBED"])])
        == b'* LIST () "/" INBOX (CHILDINFO ("SUBSCRIBED"))\r\n'
    )
    assert (
        R.esearch("A1", True, [("MIN", 2), ("ALL", seq("2,10:11"))])
        == b'* ESEARCH (TAG "A1") UID MIN 2 ALL 2,10:11\r\n'
    )
    assert R.vanished(seq("41,43:116"), earlier=True) == b"* VANISHED (EARLIER) 41,43:116\r\n"
    dt = datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=datetime.timezone(-datetime.timedelta(hours=8)))
    assert R.internaldate(dt) == " 7-Feb-1994 21:52:25 -0800"
    out = R.fetch(
        12,
        [
            ("FLAGS", R.flags(["\\Seen", "\\Recent"], rev2=True)),
            ("INTERNALDATE", R.internaldate(dt)),
            ("UID", 4827313),
            ("BODY[HEADER.FIELDS (SUBJECT)]", b"Subject: x\r\n\r\n"),
        ],
    )
    assert out == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE " 7-Feb-1994 21:52:25 -0800" UID 4827313 '
        b"BODY[HEADER.FIELDS (SUBJECT)] {14}\r\nSubject: x\r\n\r\n)\r\n"
    )
    # an encoded response round-trips through our own literal framing rules
    assert R.fetch(1, [("BODY[]", R.Binary(b"x\0"))]).startswith(b"* 1 FETCH (BODY[] ~{2}\r\n")


# ------------------------------------------------------- URLFETCH (RFC 5524) and CANCELUPDATE


def test_urlfetch_rfc5524_items() -> None:
    from mailhouse.proto.imap.commands import UrlFetchItem

    cmd = parse1(b'a URLFETCH ("imap://h/INBOX/;uid=1/;section=2" BINARY BODYPARTSTRUCTURE) plain (u2)')
    assert isinstance(cmd.args, UrlFetch)
    assert cmd.args.urls == (b"imap://h/INBOX/;uid=1/;section=2", b"plain", b"u2")
    assert cmd.args.requests() == (
        UrlFetchItem(
            b"imap://h/INBOX/;uid=1/;section=2",
            binary=True,
            bodypartstructure=True,
            body=False,
            extended=True,
        ),
        UrlFetchItem(b"plain"),
        UrlFetchItem(b"u2", body=False, extended=True),  # no BODY/BINARY: no body
    )
    body = parse1(b"a URLFETCH (u body)").args
    assert isinstance(body, UrlFetch)
    assert body.requests() == (UrlFetchItem(b"u", body=True, extended=True),)
    plain = parse1(b"a URLFETCH u1 u2").args
    assert isinstance(plain, UrlFetch)
    assert plain.items == () and plain.requests() == (UrlFetchItem(b"u1"), UrlFetchItem(b"u2"))


@pytest.mark.parametrize(
    "line",
    [
        b"a URLFETCH",
        b"a URLFETCH (u BINARY BODY)",
        b"a URLFETCH (u BODY BODY)",
        b"a URLFETCH (u FOO)",
        b"a URLFETCH (u",
        b"a URLFETCH ()",
        b"a CANCELUPDATE",
        b"a CANCELUPDATE tag1",
    ],
)
def test_urlfetch_cancelupdate_bad(line: bytes) -> None:
    assert bad(line).reply_bytes.startswith(b"a BAD ")


def test_cancelupdate() -> None:
    from mailhouse.proto.imap.commands import CancelUpdate

    cmd = parse1(b'a CANCELUPDATE "A1" "b.2"')
    assert cmd.name == "CANCELUPDATE" and cmd.args == CancelUpdate(("A1", "b.2"))
