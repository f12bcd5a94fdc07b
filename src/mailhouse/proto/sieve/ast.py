"""Sieve abstract syntax (RFC 5228 §8.2): what the parser produces, before validation.

Invariant: every node keeps the line/column of its first token, so the validator and the evaluator
report errors where the script says them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StringList", "Number", "Tag", "Argument", "Test", "Command"]


@dataclass(frozen=True, slots=True)
class StringList:
    """A string (``is_list`` False) or a bracketed string list (§2.4.2.1)."""

    values: tuple[str, ...]
    is_list: bool
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Tag:
    name: str  # without the ':' and lowercased
    line: int
    column: int


Argument = StringList | Number | Tag


@dataclass(frozen=True, slots=True)
class Test:
    name: str
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    block: tuple[Command, ...] | None  # None: the command ended with ';'
    line: int
    column: int
