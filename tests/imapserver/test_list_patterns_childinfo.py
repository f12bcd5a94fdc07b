"""LIST patterns vs mailbox names, LIST-EXTENDED CHILDINFO and LSUB placeholders (issue 13 §1).

* A LIST pattern is not a name: ``&`` is judged as modified UTF-7 (RFC 3501 §5.1.3) only where
  it forms a shift; elsewhere it stands for itself (as Dovecot matches a pattern it cannot
  decode). Names with every printable character but the delimiter and the wildcards
  round-trip through CREATE / LIST / SELECT / STATUS / RENAME / DELETE.
* ``CHILDINFO ("SUBSCRIBED")`` (RFC 5258 §3.5, §5 example 9) marks a name that matches the
  pattern and has a subscribed descendant that does *not* match it.
* LSUB (RFC 3501 §6.3.9): the unsubscribed (or missing) parent of a subscribed child that the
  pattern hides is returned flagged ``\\Noselect``.

Dovecot (Debian's dovecot-imapd, a private instance on loopback) answers the same commands on
the same hierarchy; the comparison covers the names listed, CHILDINFO and \\Subscribed (the
attributes Dovecot omits when not asked — \\HasChildren/\\HasNoChildren, RFC 5258 §4 MAY —
and \\NonExistent for parents, which Mailhouse creates on CREATE, are left out).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.imapserver.imap_wire import RawIMAP as PlainIMAP
from tests.imapserver.server_helpers import raw_client, start_server, tagged
from tests.mailhouse_proc import MailhouseProcess

USERS = ("lp1", "lp2", "lp3", "lp4", "lp5", "lp6")
DOVECOT_USER, DOVECOT_PW = "lp@example.test", "lp-pw"
# every printable US-ASCII character except the hierarchy delimiter "/" and the wildcards
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "/%*")
ATOM_PATTERN = "!#$$&'+,-.0123456789:;<=>?@^_`|[}%*"  # issue 13's LIST pattern, sent as an atom


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("listpat"), users=USERS)
    try:
        yield mh
    finally:
        mh.stop()


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mutf7(name: str) -> str:
    from mailhouse.proto.imap import mutf7

    return mutf7.encode(name).decode("ascii")


_LIST_RE = re.compile(rb'^\* (LIST|LSUB) \(([^)]*)\) (?:"."|NIL) (.*?)(?: \((.*)\))?$')


def _unquote(tok: bytes) -> str:
    if tok.startswith(b'"'):
        return re.sub(rb'\\(["\\])', rb"\1", tok[1:-1]).decode("ascii")
    return tok.decode("ascii")


def _listed(lines: list[bytes], sep: str = "/") -> dict[str, tuple[frozenset[str], bool]]:
    """name (with "/" as delimiter) -> (attributes, lower-cased; CHILDINFO SUBSCRIBED present)."""
    out: dict[str, tuple[frozenset[str], bool]] = {}
    for ln in lines:
        m = _LIST_RE.match(ln.rstrip(b"\r\n"))
        if m is None:
            continue
        name = _unquote(m.group(3)).replace(sep, "/")
        attrs = frozenset(a.lower() for a in m.group(2).decode().split())
        out[name] = (attrs, b"CHILDINFO" in (m.group(4) or b"").upper())
    return out


def test_list_pattern_is_not_a_name(server: MailhouseProcess) -> None:
    c = raw_client(server, "lp1")
    try:
        # the command: answered NO [CANNOT] (modified UTF-7) before
        r = c.cmd(f'LIST "" {ATOM_PATTERN}')
        assert tagged(r).startswith(b"OK"), r
        assert r[:-1] == [], r
        name = ATOM_PATTERN[:-2]  # the same characters as a name: "&" is sent as "&-"
        assert tagged(c.cmd(f"CREATE {_quote(_mutf7(name))}")).startswith(b"OK")
        r = c.cmd(f'LIST "" {ATOM_PATTERN}')
        assert list(_listed(r)) == [_mutf7(name)], r
        # "&" forming no shift stands for itself; a valid shift is decoded
        for n in ("a&b", "a\u263ab", "a\u263a&x"):
            assert tagged(c.cmd(f"CREATE {_quote(_mutf7(n))}")).startswith(b"OK")
        expect = {
            '"a&*"': {"a&-b"},
            '"a&Jjo-*"': {"a&Jjo-b", "a&Jjo-&-x"},
            '"a&Jjo-&-*"': {"a&Jjo-&-x"},
            '"*&*"': {_mutf7(name), "a&-b", "a&Jjo-&-x"},
            '"&*"': set(),
            '"a&AGI-*"': set(),  # non-canonical shift ("b" in base64): the characters as written
        }
        for pat, names in expect.items():
            r = c.cmd(f'LIST "" {pat}')
            assert tagged(r).startswith(b"OK") and set(_listed(r)) == names, (pat, r)
        r = c.cmd('LSUB "a&" "*"')  # the reference is decoded like the pattern
        assert tagged(r).startswith(b"OK"), r
        # a *name* is still judged strictly (RFC 3501 §5.1.3), as Dovecot refuses it
        for bad in ('"a&b"', '"q&"', '"a&AGE-"', "!#$&'+,-"):
            assert tagged(c.cmd(f"CREATE {bad}")).startswith(b"NO [CANNOT]"), bad
    finally:
        c.close()


def test_printable_names_round_trip(server: MailhouseProcess) -> None:
    c = raw_client(server, "lp2")
    try:
        name, renamed = "x" + PRINTABLE, "y" + PRINTABLE + "&"
        wire, wire2 = _mutf7(name), _mutf7(renamed)
        assert tagged(c.cmd(f"CREATE {_quote(wire)}")).startswith(b"OK")
        r = c.cmd('LIST "" "x*"')
        assert list(_listed(r)) == [wire], r
        r = c.cmd(f"SELECT {_quote(wire)}")
        assert tagged(r).startswith(b"OK [READ-WRITE]"), r
        r = c.cmd(f"STATUS {_quote(wire)} (MESSAGES)")
        assert tagged(r).startswith(b"OK") and r[0].endswith(b"(MESSAGES 0)"), r
        assert tagged(c.cmd(f"SUBSCRIBE {_quote(wire)}")).startswith(b"OK")
        assert tagged(c.cmd(f"RENAME {_quote(wire)} {_quote(wire2)}")).startswith(b"OK")
        r = c.cmd('LSUB "" "*"')
        assert wire2 in _listed(r) and wire not in _listed(r), r
        assert list(_listed(c.cmd('LIST "" "y*"'))) == [wire2]
        assert tagged(c.cmd(f"DELETE {_quote(wire2)}")).startswith(b"OK")
        assert _listed(c.cmd('LIST "" "y*"')) == {}
    finally:
        c.close()


def _hierarchy(c: Any, sep: str, *, plain: bool) -> None:
    """RFC 5258 §5 example 9's hierarchy and subscriptions, plus imaptest's listext set."""

    def ok(cmd: str) -> None:
        cmd = cmd.replace("/", sep)
        if plain:
            c.cmd(cmd, check=False)
        else:
            assert tagged(c.cmd(cmd)).startswith(b"OK"), cmd

    for n in ("foo2", "foo2/bar1", "foo2/bar2", "baz2", "baz2/bar2", "baz2/bar22", "baz2/bar222"):
        ok(f"CREATE {n}")
    for n in ("eps2", "eps2/mamba", "qux2/bar2", "lx/test1", "lx/test2/test1", "lx/test3"):
        ok(f"CREATE {n}")
    for n in ("lx/test4/test5", "lx/test4/test52", "lx/test7/test7", "lx/test8/test8", "lx/test8/test9"):
        ok(f"CREATE {n}")
    for n in ("foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2", "eps2/mamba"):
        ok(f"SUBSCRIBE {n}")
    for n in (
        "qux2/bar2",
        "lx/test1",
        "lx/test2/test1",
        "lx/test7/test7",
        "lx/test8/test8",
        "lx/test8/test9",
    ):
        ok(f"SUBSCRIBE {n}")


SUBSCRIBED_LISTS = [
    # RFC 5258 §5 example 9 (D03, both forms)
    'LIST (RECURSIVEMATCH SUBSCRIBED) "" "*2"',
    'LIST (RECURSIVEMATCH SUBSCRIBED) "" "%2"',
    # imaptest listext: CHILDINFO only where a subscribed child is not listed anyway
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*test7"',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*test8"',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" (lx/test2)',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" (lx/test2 lx/test2/test1)',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" lx/% RETURN (CHILDREN)',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" lx/%/%',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" lx/*',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" %',
    'LIST (SUBSCRIBED) "" "*2"',
    'LIST (SUBSCRIBED) "" %',
]
LSUBS = [
    'LSUB "" %',
    'LSUB "" "%2"',
    'LSUB "" "*2"',
    'LSUB "" lx/%',
    'LSUB "" lx/*',
    'LSUB "" lx/%/%',
    "LSUB lx/ %",
]


def _norm(listed: dict[str, tuple[frozenset[str], bool]], *, lsub: bool) -> dict[str, tuple[bool, bool]]:
    """What both servers must agree on: the names, and \\Subscribed + CHILDINFO (LIST) or
    \\Noselect (LSUB). The default mailboxes Mailhouse makes (Sent, Trash, ...) are not in
    Dovecot's fresh account."""
    skip = {"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}
    key = "\\noselect" if lsub else "\\subscribed"
    return {n: (key in a, ci) for n, (a, ci) in listed.items() if n not in skip}


def test_childinfo_and_lsub_match_dovecot(server: MailhouseProcess, dovecot_factory: Any) -> None:
    dc = dovecot_factory(users={DOVECOT_USER: DOVECOT_PW}, pop3_port=0)
    d = PlainIMAP(dc.host, dc.imap_port)
    d.cmd(f'LOGIN {DOVECOT_USER} "{DOVECOT_PW}"')
    sep = re.search(rb'"(.)"', d.cmd('LIST "" ""')[0][0]).group(1).decode()  # type: ignore[union-attr]
    _hierarchy(d, sep, plain=True)
    c = raw_client(server, "lp3")
    try:
        _hierarchy(c, "/", plain=False)
        for cmd in SUBSCRIBED_LISTS + LSUBS:
            lsub = cmd.startswith("LSUB")
            ours = _norm(_listed(c.cmd(cmd)), lsub=lsub)
            theirs = _norm(_listed(d.cmd(cmd.replace("/", sep), check=False)[0], sep), lsub=lsub)
            assert ours == theirs, (cmd, ours, theirs)
    finally:
        c.close()
        d.sock.close()


def test_childinfo_and_lsub_placeholders(server: MailhouseProcess) -> None:
    """The issue's own cases, stated against RFC 5258 §3.5 and RFC 3501 §6.3.9 directly."""
    c = raw_client(server, "lp4")
    try:
        for cmd in ("CREATE a/b/c/d", "SUBSCRIBE a/b/c", "CREATE gone/kid", "SUBSCRIBE gone/kid"):
            assert tagged(c.cmd(cmd)).startswith(b"OK"), cmd
        # a/b/c is subscribed and listed by the second pattern: a/b gets no CHILDINFO (redundant,
        # RFC 5258 §3.5) and is not listed at all (not subscribed)
        got = _listed(c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" (a/b a/b/c)'))
        assert set(got) == {"a/b/c"} and got["a/b/c"] == (got["a/b/c"][0], False), got
        assert "\\subscribed" in got["a/b/c"][0]
        # with only a/b as pattern, its subscribed descendant is not listed: CHILDINFO
        got = _listed(c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" (a/b)'))
        assert set(got) == {"a/b"} and got["a/b"][1] and "\\subscribed" not in got["a/b"][0], got
        # a subscribed descendant below a/b/c: a/b/c gets CHILDINFO too (example 9, "eps2")
        assert tagged(c.cmd("SUBSCRIBE a/b/c/d")).startswith(b"OK")
        got = _listed(c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" (a/b a/b/c)'))
        assert set(got) == {"a/b", "a/b/c"} and got["a/b"][1] and got["a/b/c"][1], got
        # LSUB: "%" hides a/b/c and gone/kid; their parents come back flagged \Noselect
        assert tagged(c.cmd("DELETE gone/kid")).startswith(b"OK")
        assert tagged(c.cmd("DELETE gone")).startswith(b"OK")
        got = _listed(c.cmd('LSUB "" %'))
        assert got["a"][0] == {"\\noselect"} and got["gone"][0] == {"\\noselect"}, got
        got = _listed(c.cmd('LSUB "" a/%'))
        assert set(got) == {"a/b"} and got["a/b"][0] == {"\\noselect"}, got
        got = _listed(c.cmd('LSUB "" a/b/%'))
        assert set(got) == {"a/b/c"} and got["a/b/c"][0] == frozenset(), got
        got = _listed(c.cmd('LSUB "" *'))
        assert {"a/b/c", "a/b/c/d", "gone/kid"} <= set(got) and "a" not in got, got
    finally:
        c.close()


# RFC 5258 §5: the examples, as (command, {name: attributes that must be there, CHILDINFO}).
# Only the attributes an example is about are checked (a server MAY add \HasChildren etc.).
RFC5258_SETUP = [
    "CREATE Fruit",
    "CREATE Fruit/Apple",
    "CREATE Fruit/Banana",
    "CREATE Fruit/Peach",
    "CREATE Tofu",
    "CREATE Vegetable",
    "CREATE Vegetable/Broccoli",
    "CREATE Vegetable/Corn",
    "SUBSCRIBE Fruit/Banana",
    "SUBSCRIBE Fruit/Peach",
    "SUBSCRIBE Vegetable",
    "SUBSCRIBE Vegetable/Broccoli",
    "DELETE Fruit/Peach",  # "subscribed to, but does not actually exist"
]
_ALL = {"Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu", "Vegetable", "Vegetable/Broccoli", "Vegetable/Corn"}
_SUBS2 = {
    "Fruit/Banana": {"\\subscribed"},
    "Vegetable": {"\\subscribed"},
    "Vegetable/Broccoli": {"\\subscribed"},
}
_TOP3 = {"Fruit": {"\\haschildren"}, "Tofu": {"\\hasnochildren"}, "Vegetable": {"\\haschildren"}}
RFC5258_EXAMPLES: list[tuple[str, dict[str, tuple[set[str], bool]]]] = [
    ('LIST "" "*"', {n: (set(), False) for n in _ALL}),  # example 1
    (  # example 2
        'LIST (SUBSCRIBED) "" "*"',
        {
            **{n: (a, False) for n, a in _SUBS2.items()},
            "Fruit/Peach": ({"\\subscribed", "\\nonexistent"}, False),
        },
    ),
    ('LIST () "" "%" RETURN (CHILDREN)', {n: (a, False) for n, a in _TOP3.items()}),  # example 3
    ('LIST (REMOTE) "" "%" RETURN (CHILDREN)', {n: (a, False) for n, a in _TOP3.items()}),  # 4: no remote
    (  # example 5
        'LIST (REMOTE SUBSCRIBED) "" "*"',
        {
            **{n: (a, False) for n, a in _SUBS2.items()},
            "Fruit/Peach": ({"\\subscribed", "\\nonexistent"}, False),
        },
    ),
    ('LIST (REMOTE) "" "*" RETURN (SUBSCRIBED)', {n: (_SUBS2.get(n, set()), False) for n in _ALL}),  # 6
    (
        'LIST "" ("INBOX" "Fruit" "Vegetable/%")',
        {n: (set(), False) for n in ("Fruit", "Vegetable/Broccoli", "Vegetable/Corn")},
    ),
    (
        'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
        {"Fruit": (set(), True), "Vegetable": ({"\\subscribed"}, True)},
    ),
]
# example 8, in steps: (subscription changes, command, expected)
RFC5258_EXAMPLE8 = [
    (
        [],
        'LIST "" "%" RETURN (CHILDREN)',
        {"Foo": ({"\\haschildren"}, False), "Moo": ({"\\hasnochildren"}, False)},
    ),
    (["SUBSCRIBE Foo/Baz"], 'LIST (SUBSCRIBED) "" "*"', {"Foo/Baz": ({"\\subscribed"}, False)}),  # A
    ([], 'LIST (SUBSCRIBED) "" "%"', {}),
    ([], 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', {"Foo": (set(), True)}),
    (["SUBSCRIBE Foo"], 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', {"Foo": ({"\\subscribed"}, True)}),  # A1
    (["UNSUBSCRIBE Foo", "UNSUBSCRIBE Foo/Baz"], 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', {}),  # B
    (  # C
        ["SUBSCRIBE Foo", "SUBSCRIBE Moo"],
        'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
        {
            "Foo": ({"\\haschildren", "\\subscribed"}, False),
            "Moo": ({"\\hasnochildren", "\\subscribed"}, False),
        },
    ),
]
_DEFAULTS = {"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}


def _check(
    got: dict[str, tuple[frozenset[str], bool]], want: dict[str, tuple[set[str], bool]], what: str
) -> None:
    got = {n: v for n, v in got.items() if n not in _DEFAULTS}
    assert set(got) == set(want), (what, got)
    for n, (attrs, childinfo) in want.items():
        assert attrs <= got[n][0] and got[n][1] == childinfo, (what, n, got[n])
        if "\\subscribed" not in attrs:
            assert "\\subscribed" not in got[n][0], (what, n, got[n])


def _run_rfc5258(cmd: Any, sep: str) -> None:
    """Run RFC 5258 §5's examples through ``cmd(line) -> untagged lines`` on one server."""
    for line in RFC5258_SETUP:
        cmd(line.replace("/", sep))
    for line, want in RFC5258_EXAMPLES:
        _check(_listed(cmd(line.replace("/", sep)), sep), want, line)


def test_rfc5258_examples(server: MailhouseProcess, dovecot_factory: Any) -> None:
    c = raw_client(server, "lp5")
    c8 = raw_client(server, "lp6")
    dc = dovecot_factory(users={"ex@example.test": "ex-pw", "ex8@example.test": "ex-pw"}, pop3_port=0)
    d = PlainIMAP(dc.host, dc.imap_port)
    d.cmd('LOGIN ex@example.test "ex-pw"')
    d8 = PlainIMAP(dc.host, dc.imap_port)
    d8.cmd('LOGIN ex8@example.test "ex-pw"')
    try:
        _run_rfc5258(lambda line: c.cmd(line), "/")
        _run_rfc5258(lambda line: d.cmd(line, check=False)[0], ".")  # the examples hold for Dovecot too
        for ours, theirs, sep in ((c8, None, "/"), (None, d8, ".")):

            def run(line: str) -> list[bytes]:
                line = line.replace("/", sep)
                return ours.cmd(line) if ours is not None else theirs.cmd(line, check=False)[0]  # type: ignore[union-attr]

            for line in ("CREATE Foo", "CREATE Foo/Bar", "CREATE Foo/Baz", "CREATE Moo"):
                run(line)
            for changes, line, want in RFC5258_EXAMPLE8:
                for ch in changes:
                    run(ch)
                _check(_listed(run(line), sep), want, line)
    finally:
        for x in (c, c8):
            x.close()
        for y in (d, d8):
            y.sock.close()
