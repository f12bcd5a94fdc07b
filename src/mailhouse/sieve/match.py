"""Comparators (RFC 4790 via RFC 5228 §2.7.3) and match types (RFC 5228 §2.7.1, RFC 5231, regex draft).

Comparators: ``i;octet`` (code points), ``i;ascii-casemap`` (ASCII letters folded, the default),
``i;ascii-numeric`` (leading digits as a number; a string without leading digits is +infinity,
RFC 4790 §9.1.1). Match types: :is, :contains, :matches (``*``/``?`` wildcards with ``\\`` escape),
:regex (POSIX extended, draft-ietf-sieve-regex), :value/:count with gt/ge/lt/le/eq/ne (RFC 5231).

Regex safety: patterns run in the ``regex`` package with ``timeout=`` (SieveLimits.regex_timeout),
and the subject is cut to SieveLimits.max_regex_input characters; a time-out is a run-time error
(the message is kept). The ``regex`` engine was chosen over ``re`` plus a nested-quantifier
heuristic because a timeout bounds every pathological pattern, not only the ones a heuristic spots.
:matches globs are translated to the same engine under the same bounds.
"""

from __future__ import annotations

import functools
import math

import regex

from mailhouse.proto.sieve.errors import SieveRuntimeError

__all__ = ["Matcher", "compile_regex", "fold", "glob_to_regex"]

_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(comparator: str, s: str) -> str:
    return s.translate(_UPPER) if comparator == "i;ascii-casemap" else s


def _numeric(s: str) -> float:
    i = 0
    while i < len(s) and "0" <= s[i] <= "9":
        i += 1
    return int(s[:i]) if i else math.inf


def glob_to_regex(pattern: str) -> str:
    """RFC 5228 §2.7.1 :matches → a regex; each wildcard is one capturing group (RFC 5229 §3.2)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(regex.escape(pattern[i]))
        elif c == "*":
            out.append("(.*?)")
        elif c == "?":
            out.append("(.)")
        else:
            out.append(regex.escape(c))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: str, casefold: bool, glob: bool) -> regex.Pattern[str]:
    """Compile (cached); raises ``regex.error`` on a bad pattern."""
    flags = regex.DOTALL | regex.POSIX if not glob else regex.DOTALL
    if casefold:
        flags |= regex.IGNORECASE | regex.ASCII
    return regex.compile(glob_to_regex(pattern) if glob else pattern, flags)


class Matcher:
    """One test's comparator + match type; :meth:`match` returns (matched, match variables)."""

    def __init__(
        self, comparator: str, match_type: str, relation: str | None, *, max_input: int, timeout: float
    ) -> None:
        self.cmp = comparator
        self.type = match_type
        self.rel = relation
        self.max_input = max_input
        self.timeout = timeout

    def compare(self, value: str, key: str) -> bool:
        """:value relation or :is equality under the comparator (RFC 5231 §4)."""
        if self.cmp == "i;ascii-numeric":
            a: object = _numeric(value)
            b: object = _numeric(key)
        else:
            a, b = fold(self.cmp, value), fold(self.cmp, key)
        rel = self.rel or "eq"
        if rel == "eq":
            return a == b
        if rel == "ne":
            return a != b
        if a == b:
            return rel in ("ge", "le")
        less = a < b  # type: ignore[operator]
        return less if rel in ("lt", "le") else not less

    def one(self, value: str, key: str) -> list[str] | None:
        """None if no match, else the match variables (empty list when the type sets none)."""
        t = self.type
        if t in ("is", "value"):
            return [] if self.compare(value, key) else None
        if t == "contains":
            if self.cmp == "i;ascii-numeric":
                raise SieveRuntimeError(0, 0, "comparator i;ascii-numeric does not support :contains")
            return [] if fold(self.cmp, key) in fold(self.cmp, value) else None
        if t in ("matches", "regex"):
            if self.cmp == "i;ascii-numeric":
                raise SieveRuntimeError(0, 0, f"comparator i;ascii-numeric does not support :{t}")
            try:
                pat = compile_regex(key, self.cmp == "i;ascii-casemap", t == "matches")
            except regex.error as e:
                raise SieveRuntimeError(0, 0, f"invalid regular expression {key!r}: {e}") from None
            subject = value[: self.max_input]
            try:
                m = (
                    pat.fullmatch(subject, timeout=self.timeout)
                    if t == "matches"
                    else pat.search(subject, timeout=self.timeout)
                )
            except TimeoutError:
                raise SieveRuntimeError(0, 0, f"regular expression {key!r} took too long") from None
            if m is None:
                return None
            if t == "matches":
                return [m.group(0), *(g or "" for g in m.groups())]
            return [m.group(0), *(g or "" for g in m.groups())]
        raise SieveRuntimeError(0, 0, f"unsupported match type :{t}")

    def any(self, values: list[str], keys: tuple[str, ...]) -> tuple[bool, list[str] | None]:
        """RFC 5228 §2.7.1: true if any value matches any key. :count counts the values."""
        if self.type == "count":
            n = str(len(values))
            return any(self.compare(n, k) for k in keys), None
        for v in values:
            for k in keys:
                got = self.one(v, k)
                if got is not None:
                    return True, got if self.type in ("matches", "regex") else None
        return False, None
