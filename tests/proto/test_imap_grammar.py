"""proto/imap/grammar.py: the command table and COMMAND_NAMES, the names the IMAP server dispatches on."""

from __future__ import annotations

import pytest

from mailhouse.proto.imap import COMMAND_NAMES, ParseError, parse_command
from mailhouse.proto.imap.grammar import COMMANDS, UID_COMMANDS
from tests.proto.test_imap_parser import CASES, SIMPLE, parse1

UID_LINES = {
    "COPY": b"a uid copy 1 x",
    "MOVE": b"a UID MOVE 1 x",
    "FETCH": b"a UID FETCH 1 FLAGS",
    "SEARCH": b"a UID SEARCH ALL",
    "STORE": b"a UID STORE 1 FLAGS (\\Seen)",
    "EXPUNGE": b"a UID EXPUNGE 1",
    "SORT": b"a UID SORT (DATE) UTF-8 ALL",
    "THREAD": b"a UID THREAD REFERENCES UTF-8 ALL",
}


def test_command_names_spell_command_name() -> None:
    assert isinstance(COMMAND_NAMES, frozenset)
    assert {
        "FETCH",
        "UID FETCH",
        "EXAMINE",
        "EXPUNGE",
        "UID EXPUNGE",
        "ESEARCH",
        "UNAUTHENTICATE",
    } <= COMMAND_NAMES
    assert COMMAND_NAMES == set(COMMANDS) | {f"UID {n}" for n in UID_COMMANDS}
    assert "UID" not in COMMAND_NAMES and "UID NOOP" not in COMMAND_NAMES
    assert all(n == n.upper() for n in COMMAND_NAMES)


def test_every_parsed_name_is_in_command_names() -> None:
    names = {parse1(line).name for line, _, _ in CASES} | {parse1(f"a {n}".encode()).name for n in SIMPLE}
    assert names <= COMMAND_NAMES
    assert set(UID_LINES) == UID_COMMANDS
    for sub, line in UID_LINES.items():
        assert parse1(line).name == f"UID {sub}"  # as the session dispatches it


@pytest.mark.parametrize("name", ["XYZZY", "UID NOOP", "UID LIST"])
def test_commands_outside_the_table_are_refused(name: str) -> None:
    with pytest.raises(ParseError, match="Unknown"):
        parse_command([f"a {name}".encode()])
