"""imapserver.commands: the one command table against the parser's table of command names.

Every command the parser (``proto.imap``) accepts has a handler and a state that allows it,
and every handler's name is one the parser accepts — so no command is parsed and then answered
"not supported" (the drift issue 11 found for ESEARCH and UNAUTHENTICATE), and no handler is
unreachable.
"""

from __future__ import annotations

import inspect

from mailhouse.imapserver.commands import ALLOWED, COMMANDS
from mailhouse.imapserver.context import State
from mailhouse.proto.imap import COMMAND_NAMES

# Parsed names deliberately answered "not supported": none.
UNSUPPORTED: frozenset[str] = frozenset()


def _parser_names() -> set[str]:
    return set(COMMAND_NAMES)  # "UID X" forms included, as the session dispatches them


def test_every_parsed_command_has_a_handler() -> None:
    missing = _parser_names() - set(COMMANDS) - UNSUPPORTED
    assert not missing, f"parsed but not handled: {sorted(missing)}"


def test_every_handler_is_reachable_through_the_parser() -> None:
    extra = set(COMMANDS) - _parser_names()
    assert not extra, f"handled but never parsed: {sorted(extra)}"


def test_unsupported_list_is_current() -> None:
    assert UNSUPPORTED <= _parser_names()
    assert not UNSUPPORTED & set(COMMANDS)


def test_state_gate_names_only_handled_commands() -> None:
    allowed = set().union(*ALLOWED.values())
    assert allowed <= set(COMMANDS), sorted(allowed - set(COMMANDS))
    assert set(COMMANDS) <= allowed, f"never allowed: {sorted(set(COMMANDS) - allowed)}"
    assert set(ALLOWED) == set(State)


def test_state_gate_follows_rfc_9051_states() -> None:
    anywhere = {"CAPABILITY", "NOOP", "LOGOUT", "ID"}
    for state in (State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED):
        assert anywhere <= ALLOWED[state], state
    assert ALLOWED[State.AUTHENTICATED] <= ALLOWED[State.SELECTED]  # RFC 9051 §6.4
    assert ALLOWED[State.NOT_AUTHENTICATED] == anywhere | {"STARTTLS", "LOGIN", "AUTHENTICATE"}
    assert not ALLOWED[State.LOGOUT]
    for name in ("LOGIN", "AUTHENTICATE", "STARTTLS"):
        assert name not in ALLOWED[State.AUTHENTICATED]
    for name in ("FETCH", "UID FETCH", "STORE", "EXPUNGE", "CLOSE", "SEARCH", "CANCELUPDATE"):
        assert name in ALLOWED[State.SELECTED] and name not in ALLOWED[State.AUTHENTICATED]
    # RFC 8437 §3 / RFC 7377 §2: authenticated and selected states
    for name in ("UNAUTHENTICATE", "ESEARCH"):
        assert name in ALLOWED[State.AUTHENTICATED] and name not in ALLOWED[State.NOT_AUTHENTICATED]


def test_handlers_are_coroutine_functions() -> None:
    for name, handler in COMMANDS.items():
        assert inspect.iscoroutinefunction(handler), name
        assert handler.__module__.startswith("mailhouse.imapserver.commands."), name
