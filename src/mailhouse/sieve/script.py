"""Compiling a Sieve script: :func:`compile_script` → :class:`Script` (parse + validate + checks).

Beyond the sans-IO validator this checks what needs the services layer: constant :regex patterns
compile (draft-ietf-sieve-regex §3: a bad pattern is a compile error), and RFC 6609 include names
(constant strings, so the caller resolves them before running: :attr:`Script.includes`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import regex

from mailhouse.proto.sieve.errors import SieveValidationError
from mailhouse.proto.sieve.limits import SieveLimits
from mailhouse.proto.sieve.validate import Node, parse_and_validate
from mailhouse.sieve.match import compile_regex

__all__ = ["Location", "Script", "compile_script"]


class Location(enum.Enum):
    """RFC 6609 §3.2 include locations."""

    PERSONAL = "personal"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    commands: tuple[Node, ...]
    requires: frozenset[str]
    includes: tuple[tuple[Location, str], ...]

    @property
    def uses_variables(self) -> bool:
        return "variables" in self.requires


def _walk(nodes: tuple[Node, ...]) -> list[Node]:
    out: list[Node] = []
    stack = list(reversed(nodes))  # pre-order, in script order
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed((*n.tests, *(n.block or ()))))
    return out


def _has_var(s: str) -> bool:
    return "${" in s


def compile_script(text: str | bytes, *, name: str = "", limits: SieveLimits = SieveLimits()) -> Script:
    """Parse and validate ``text``; raises a ``SieveError`` subclass with ``line``/``column``/``message``."""
    v = parse_and_validate(text, limits)
    includes: list[tuple[Location, str]] = []
    variables = "variables" in v.requires
    for n in _walk(v.commands):
        if "regex" in n.tags and n.positional:
            keys = n.positional[-1]
            for k in getattr(keys, "values", ()):
                if variables and _has_var(k):
                    continue
                try:
                    compile_regex(k, False, False)
                except regex.error as e:
                    raise SieveValidationError(
                        keys.line, keys.column, f"invalid regular expression {k!r}: {e}"
                    ) from None
        if n.name == "include":
            arg = n.positional[0]
            target = getattr(arg, "values", ("",))[0]
            if variables and _has_var(target):
                raise SieveValidationError(arg.line, arg.column, "include script name must be a constant")
            if not target or "/" in target:
                raise SieveValidationError(arg.line, arg.column, f"invalid include script name {target!r}")
            loc = Location.GLOBAL if "global" in n.tags else Location.PERSONAL
            if (loc, target) not in includes:
                includes.append((loc, target))
    return Script(name, v.commands, v.requires, tuple(includes))
