"""The ManageSieve core (proto/managesieve.py, RFC 5804 §4 grammar): fed whole, byte by byte and
with trailing data; hypothesis over arbitrary input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.proto.managesieve import (
    MAX_LINE,
    NEED_DATA,
    Code,
    Command,
    CommandError,
    Event,
    Kind,
    ManageSieveServerProtocol,
    SaslCancelled,
    SaslResponse,
    capability_lines,
    response,
    string,
    valid_script_name,
)


def feed(data: bytes, step: int, max_literal: int = 100) -> list[Event]:
    core = ManageSieveServerProtocol(max_literal)
    out: list[Event] = []
    for i in range(0, len(data), step):
        core.receive_data(data[i : i + step])
        while (ev := core.next_event()) is not NEED_DATA:
            out.append(ev)
    return out


def both(data: bytes, max_literal: int = 100) -> list[Event]:
    whole = feed(data, len(data) or 1, max_literal)
    assert feed(data, 1, max_literal) == whole
    return whole


SCRIPT = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'


def test_commands_with_quoted_literal_and_number() -> None:
    data = (
        b'putscript "my script" {%d+}\r\n' % len(SCRIPT)
        + SCRIPT
        + b'\r\nHaveSpace "x" 1234\r\nCHECKSCRIPT {5}\r\nkeep;\r\nNOOP "a\\"b\\\\c"\r\nlistscripts\r\n'
    )
    assert both(data, 1000) == [
        Command("PUTSCRIPT", ("my script", SCRIPT.decode())),
        Command("HAVESPACE", ("x", 1234)),
        Command("CHECKSCRIPT", ("keep;",)),
        Command("NOOP", ('a"b\\c',)),
        Command("LISTSCRIPTS", ()),
    ]


def test_trailing_partial_command_waits() -> None:
    core = ManageSieveServerProtocol(100)
    core.receive_data(b'GETSCRIPT "a"\r\nGETSCRIPT "b')
    assert core.next_event() == Command("GETSCRIPT", ("a",))
    assert core.next_event() is NEED_DATA
    core.receive_data(b'"\r\n')
    assert core.next_event() == Command("GETSCRIPT", ("b",))


def test_literal_over_limit_is_dropped_and_answered_quota_maxsize() -> None:
    data = (
        b'PUTSCRIPT "a" {500+}\r\n' + b"x" * 500 + b"\r\nGETSCRIPT {300+}\r\n" + b"y" * 300 + b"\r\nNOOP\r\n"
    )
    evs = both(data)
    assert evs == [
        CommandError(b'NO (QUOTA/MAXSIZE) "Script is too large"\r\n'),
        CommandError(b'NO "Literal is too large"\r\n'),
        Command("NOOP", ()),
    ]


def test_syntax_errors_skip_the_line() -> None:
    evs = both(b'FOO\r\nPUTSCRIPT "a"\r\nNOOP %\r\nSETACTIVE 12\r\nGETSCRIPT "\xff"\r\n{x}\r\nLOGOUT\r\n')
    assert [e.reply if isinstance(e, CommandError) else e for e in evs] == [
        b'NO "Unknown command FOO"\r\n',
        b'NO "Wrong number of arguments to PUTSCRIPT"\r\n',
        b'NO "Syntax error: unexpected character"\r\n',
        b'NO "SETACTIVE: string expected"\r\n',
        b'NO "GETSCRIPT: invalid UTF-8"\r\n',
        b'NO "Syntax error: bad literal"\r\n',
        Command("LOGOUT", ()),
    ]


def test_overlong_line_is_fatal() -> None:
    evs = feed(b'NOOP "' + b"a" * (MAX_LINE + 10) + b'"\r\n', 4096)
    assert evs[0] == CommandError(b'BYE "Command line too long"\r\n', fatal=True)


def test_sasl_responses() -> None:
    core = ManageSieveServerProtocol(100)
    core.begin_sasl()
    core.receive_data(b'"dGVzdA=="\r\n')
    assert core.next_event() == SaslResponse(b"dGVzdA==")
    core.begin_sasl()
    core.receive_data(b"{1+}\r\n*\r\n")
    assert core.next_event() == SaslCancelled()
    core.begin_sasl()
    core.receive_data(b"abc\r\nNOOP\r\n")
    assert isinstance(core.next_event(), CommandError)
    assert core.next_event() == Command("NOOP", ())


def test_start_tls_drops_pipelined_plaintext() -> None:
    core = ManageSieveServerProtocol(100)
    core.receive_data(b"STARTTLS\r\nCAPABILITY\r\n")
    assert core.next_event() == Command("STARTTLS", ())
    assert core.start_tls_done() == len(b"CAPABILITY\r\n")
    assert core.next_event() is NEED_DATA


def test_output_encoding() -> None:
    assert string('a"b\\') == b'"a\\"b\\\\"'
    assert string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert string("x" * 1025).startswith(b"{1025}\r\n")
    assert response(Kind.OK) == b"OK\r\n"
    assert response(Kind.NO, Code.NONEXISTENT, "No such script") == b'NO (NONEXISTENT) "No such script"\r\n'
    assert response(Kind.OK, Code.TAG, "Done", code_arg="t1") == b'OK (TAG "t1") "Done"\r\n'
    assert capability_lines([("VERSION", "1.0"), ("STARTTLS", None)]) == b'"VERSION" "1.0"\r\n"STARTTLS"\r\n'
    assert valid_script_name("Vacation ü")
    assert not valid_script_name("") and not valid_script_name("a\nb") and not valid_script_name("a\u2028")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_any_input_same_events_whole_and_split(data: bytes, step: int) -> None:
    whole = feed(data + b"\r\nNOOP\r\n", 10_000, 20)
    split = feed(data + b"\r\nNOOP\r\n", step, 20)
    assert whole == split
    for ev in whole:
        assert isinstance(ev, Command | CommandError)
