"""Compiling a Sieve script: :func:`compile_script` → :class:`Script` (parse + validate + checks).

Beyond the sans-IO validator this checks what needs the services layer: constant :regex patterns
compile (draft-ietf-sieve-regex §3: a bad pattern is a compile error), and RFC 6609 include names
(constant strings, so the caller resolves them before running: :attr:`Script.includes`).
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from dataclasses import dataclass, field

import regex

from mailhouse.proto.sieve.errors import SieveValidationError
from mailhouse.proto.sieve.limits import SieveLimits
from mailhouse.proto.sieve.validate import Node, parse_and_validate
from mailhouse.sieve.match import Matcher, compile_regex

_ADDR = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+")


def valid_redirect_address(addr: str) -> bool:
    """An RFC 5321 forward-path as written in a script (``local@domain``, optional <>)."""
    return bool(_ADDR.fullmatch(addr.strip().removeprefix("<").removesuffix(">")))


__all__ = [
    "Location",
    "Script",
    "compile_script",
    "valid_notify_method",
    "valid_notify_option",
    "valid_redirect_address",
]


def valid_notify_method(uri: str) -> bool:
    """RFC 5436 mailto: the only notification method Mailhouse sends (RFC 5435 §3.9)."""
    if not uri.lower().startswith("mailto:"):
        return False
    parsed = urllib.parse.urlsplit(uri)
    to = urllib.parse.unquote(parsed.path)
    query = urllib.parse.parse_qs(parsed.query)
    addrs = [a.strip() for a in to.split(",") if a.strip()] + [
        a.strip() for v in query.get("to", []) for a in v.split(",") if a.strip()
    ]
    return bool(addrs) and all(valid_redirect_address(a) for a in addrs)


_OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*=.*", re.S)


def valid_notify_option(option: str) -> bool:
    """RFC 5435 §3.7: ``optionname=value``."""
    return bool(_OPTION.fullmatch(option))


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
    # evaluator's per-node cache (comparator/match type objects); not part of the value
    matchers: dict[tuple[int, int, float], Matcher] = field(default_factory=dict, compare=False, repr=False)

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
        if n.name == "redirect":  # RFC 5228 §4.2: a constant address must be valid (Pigeonhole agrees)
            arg = n.positional[0]
            addr = getattr(arg, "values", ("",))[0]
            if not (variables and _has_var(addr)) and not valid_redirect_address(addr):
                raise SieveValidationError(arg.line, arg.column, f"invalid redirect address {addr!r}")
        if n.name == "notify":  # RFC 5435 §3.7/§3.9: constant method and options checked now
            method = n.positional[0]
            uri = getattr(method, "values", ("",))[0]
            if not (variables and _has_var(uri)) and not valid_notify_method(uri):
                raise SieveValidationError(
                    method.line, method.column, f"invalid or unsupported notify method {uri!r}"
                )
            opts = n.tags.get("options")
            for o in getattr(opts, "values", ()):
                if opts is not None and not (variables and _has_var(o)) and not valid_notify_option(o):
                    raise SieveValidationError(
                        opts.line, opts.column, f"invalid notify option {o!r} (name=value)"
                    )
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
