from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.message.envelope import AddressList, envelope, imap_encode, parse_addresses
from mailhouse.message.parse import parse_message


def test_groups_route_and_defaults(corpus):
    env = envelope(parse_message(corpus("groups.eml")))
    assert env == [
        b"Thu, 13 Feb 1969 23:32:54 -0330",
        b"groups",
        [[b"Pete", None, b"pete", b"silly.example"]],
        [[b"Secretary", None, b"secretary", b"silly.example"]],
        [[b"Joe Q. Public", None, b"john.q.public", b"example.com"]],
        [
            [None, None, b"A Group", None],  # RFC 9051: group start
            [b"Ed Jones", None, b"c", b"a.test"],
            [None, None, b"joe", b"where.test"],
            [b"John", None, b"jdoe", b"one.test"],
            [None, None, None, None],  # group end
        ],
        [[None, None, b"Undisclosed recipients", None], [None, None, None, None]],
        [[None, b"@route1.example,@route2.example", b"user", b"host.example"]],
        b"<parent@silly.example>",
        b"<groups@silly.example>",
    ]


def test_sender_reply_to_default_to_from(corpus):
    env = envelope(parse_message(corpus("simple.eml")))
    frm = [[b"Fred Foobar", None, b"foobar", b"Blurdybloop.example"]]
    assert env[2] == env[3] == env[4] == frm
    assert env[5] == [[None, None, b"mooch", b"owatagu.siam.edu.example"]]
    assert env[6] is None and env[7] is None and env[8] is None
    assert env[9] == b"<B27397-0100000@Blurdybloop.example>"


def test_encoded_words_stay_raw(corpus):
    env = envelope(parse_message(corpus("encoded_words.eml")))
    assert env[1] == b"=?UTF-8?B?SGVsbG8g?= =?UTF-8?B?V8O2cmxk?= and =?iso-8859-1?q?caf=E9?="
    assert env[2] == [[b"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", None, b"keld", b"example.dk"]]


def test_address_edge_cases():
    assert parse_addresses(b"") is None
    assert parse_addresses(b"user@host (Real Name)") == [[b"Real Name", None, b"user", b"host"]]
    assert parse_addresses(b"root") == [[None, None, b"root", b"MISSING_DOMAIN"]]
    assert parse_addresses(b'"a \\"q\\" b" <x@y>') == [[b'a "q" b', None, b"x", b"y"]]
    assert parse_addresses(b"G: ;, z@w") == [
        [None, None, b"G", None],
        [None, None, None, None],
        [None, None, b"z", b"w"],
    ]
    assert parse_addresses(b"G: a@b") == [
        [None, None, b"G", None],
        [None, None, b"a", b"b"],
        [None, None, None, None],
    ]


def test_imap_encode():
    addrs = AddressList([[b"A", None, b"a", b"x"], [None, None, b"b", b"y"]])
    assert imap_encode(addrs) == b'(("A" NIL "a" "x")(NIL NIL "b" "y"))'
    assert imap_encode([b'q"\\', 5, None]) == b'("q\\"\\\\" 5 NIL)'
    assert imap_encode("Grüße".encode()) == b"{7}\r\n" + "Grüße".encode()


def test_envelope_wire_format(corpus):
    env = envelope(parse_message(corpus("simple.eml")))
    assert imap_encode(env) == (
        b'("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" "afternoon meeting" '
        b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) '
        b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) '
        b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) '
        b'((NIL NIL "mooch" "owatagu.siam.edu.example")) NIL NIL NIL '
        b'"<B27397-0100000@Blurdybloop.example>")'
    )


# ---------------------------------------------------------------- address_search_text (SEARCH FROM/TO/CC/BCC)


def test_address_search_text_writes_addresses_as_dovecot_compares_them() -> None:
    from mailhouse.message.envelope import address_search_text as ast

    assert ast(b'"Doe, John" <john.doe@Example.COM>') == '"Doe, John" <john.doe@Example.COM>'
    assert ast(b"plain@simple.test") == "<plain@simple.test>"
    assert ast(b"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>") == "Pete <pete@silly.test>"
    assert ast(b"=?UTF-8?Q?J=C3=B6rg?= <j@x.test>") == "Jörg <j@x.test>"
    assert ast(b'"john..doe"@example.com') == "<john..doe@example.com>"
    assert ast(b'"quoted local"@weird.test') == '<"quoted local"@weird.test>'
    assert ast(b"Team: a@x.test, Bob B <b@x.test>;") == 'Team: <a@x.test>, "Bob B" <b@x.test>;'
    assert ast(b"undisclosed-recipients:;") == "undisclosed-recipients:;"
    assert ast(b'"Sm\\"ith, A" <s@q.test>') == '"Sm\\"ith, A" <s@q.test>'
    assert ast(b"<@relay.test:user@final.test>") == "<@relay.test:user@final.test>"
    assert ast(None) == "" and ast(b"") == ""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_address_search_text_never_raises(value: bytes) -> None:
    from mailhouse.message.envelope import address_search_text

    assert isinstance(address_search_text(value), str)
