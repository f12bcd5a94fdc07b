"""The ACL command grammar (proto/imap/grammar_acl.py, RFC 4314 §3, §6): RFC examples fed whole,
byte by byte and with trailing data, refusals, and hypothesis over arbitrary arguments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.proto.imap import Command, CommandError
from mailhouse.proto.imap.commands import Acl
from tests.proto.test_imap_parser import bad, feed, parse1

CASES = [
    # RFC 4314 §3.1-3.5 examples
    (b"A001 SETACL INBOX/Drafts John lrc", "SETACL", Acl("INBOX/Drafts", "John", "lrc")),
    (b"A002 SETACL INBOX/Drafts Fred rwipslxetad", "SETACL", Acl("INBOX/Drafts", "Fred", "rwipslxetad")),
    (b'A035 SETACL INBOX/Drafts John "+x"', "SETACL", Acl("INBOX/Drafts", "John", "+x")),
    (b"a SETACL Team anyone -w", "SETACL", Acl("Team", "anyone", "-w")),
    (b"A001 DELETEACL INBOX/Drafts John", "DELETEACL", Acl("INBOX/Drafts", "John")),
    (b"A002 GETACL INBOX", "GETACL", Acl("INBOX")),
    (b"a LISTRIGHTS ~/Mail/saved smith", "LISTRIGHTS", Acl("~/Mail/saved", "smith")),
    (b"A003 MYRIGHTS INBOX", "MYRIGHTS", Acl("INBOX")),
    (
        b'a SETACL "Other Users/bob@example.org/Team" {15+}\r\nanyone@exa.mple l',
        "SETACL",
        Acl("Other Users/bob@example.org/Team", "anyone@exa.mple", "l"),
    ),
]


@pytest.mark.parametrize(("line", "name", "args"), CASES, ids=[c[0][:40].decode() for c in CASES])
def test_acl_commands(line: bytes, name: str, args: Acl) -> None:
    cmd = parse1(line)
    assert (cmd.name, cmd.args) == (name, args)


@pytest.mark.parametrize(
    "line",
    [
        b"a SETACL INBOX john",  # no rights
        b"a SETACL INBOX",
        b"a DELETEACL INBOX",
        b"a GETACL",
        b"a GETACL INBOX extra",
        b"a LISTRIGHTS INBOX",
        b"a MYRIGHTS INBOX x",
        b"a UID GETACL INBOX",
        b"a SETACL INBOX john " + b"l" * 600,
    ],
)
def test_acl_refusals(line: bytes) -> None:
    bad(line)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(["SETACL", "DELETEACL", "GETACL", "LISTRIGHTS", "MYRIGHTS"]),
    args=st.lists(
        st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="{"), max_size=30),
        max_size=4,
    ),
)
def test_acl_fuzz(name: str, args: list[str]) -> None:
    """Any printable arguments (no literals): one Command with `Acl` args, or one BAD."""
    line = b"t " + name.encode() + b"".join(b" " + a.encode() for a in args) + b"\r\n"
    evs = feed([line])
    assert len(evs) == 1 and isinstance(evs[0], Command | CommandError), evs
    cmds = [e for e in evs if isinstance(e, Command)]
    for c in cmds:
        assert isinstance(c.args, Acl)
