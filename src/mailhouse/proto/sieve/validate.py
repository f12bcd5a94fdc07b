"""Sieve validator: commands, tests, arguments and ``require`` (RFC 5228 §2.10.5, §3.2 and extensions).

Checks every command and test against :data:`SPECS` (its extension, tagged arguments with their
value kind and mutual-exclusion group, positional signature, test arity), the control structure
(if/elsif/else, ``require`` first), and produces a normalised :class:`Node` tree the evaluator walks.

Rules implemented, with their RFC sections:
- §3.2: ``require`` only before any other command; an unknown extension is an error; an extension
  used but not required is an error (reported at the command/tag that uses it).
- §2.7.3: comparators other than i;octet and i;ascii-casemap need ``comparator-NAME`` required.
- §2.4.2.4 (encoded-character): ``${hex:..}`` / ``${unicode:..}`` are decoded in string literals
  when the extension is required; a malformed encoding is left as written, a code point that is
  not a Unicode scalar value is an error.
- RFC 5463 (ihave): a block guarded by ``if ihave [..]`` naming an unknown extension is not
  validated (it can never run); known ones count as required inside that block.

Invariant: no recursion on the script's depth beyond :attr:`SieveLimits.max_nesting` (the parser
bounds it), so the recursive walk here is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailhouse.proto.sieve.ast import Argument, Command, Number, StringList, Tag, Test
from mailhouse.proto.sieve.errors import SieveLimitError, SieveValidationError
from mailhouse.proto.sieve.limits import SieveLimits
from mailhouse.proto.sieve.parser import parse

__all__ = [
    "EXTENSIONS",
    "IMPLIED",
    "Node",
    "ValidatedScript",
    "validate",
    "parse_and_validate",
    "RELATIONAL_OPS",
    "DATE_PARTS",
    "COMPARATORS",
]

# Every extension the interpreter implements (the SIEVE capability of ManageSieve, RFC 5804 §1.7).
EXTENSIONS: tuple[str, ...] = (
    "fileinto", "reject", "ereject", "envelope", "encoded-character", "imap4flags", "copy", "body",
    "variables", "vacation", "vacation-seconds", "relational", "subaddress", "date", "index", "regex",
    "spamtest", "spamtestplus", "virustest", "duplicate", "include", "editheader", "enotify",
    "environment", "ihave", "mailbox", "mailboxid",
    "comparator-i;octet", "comparator-i;ascii-casemap", "comparator-i;ascii-numeric",
)  # fmt: skip
# Requiring one extension makes another available (RFC 5235 §3.2 spamtestplus ⊃ spamtest; RFC 6131
# §2 vacation-seconds ⊃ vacation).
IMPLIED: Mapping[str, tuple[str, ...]] = {"spamtestplus": ("spamtest",), "vacation-seconds": ("vacation",)}
COMPARATORS = ("i;octet", "i;ascii-casemap", "i;ascii-numeric")
RELATIONAL_OPS = ("gt", "ge", "lt", "le", "eq", "ne")  # RFC 5231 §4
DATE_PARTS = (  # RFC 5260 §4.2
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11",
    "zone", "weekday",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _TagSpec:
    arg: str | None  # None (flag), "s" (one string), "l" (string list), "n" (number)
    group: str | None = None  # tags of one group exclude each other (match type, comparator...)
    ext: str | None = None


@dataclass(frozen=True, slots=True)
class _Spec:
    test: bool
    ext: str | tuple[str, ...] | None
    tags: Mapping[str, _TagSpec]
    signatures: tuple[str, ...]  # each a string of s/l/n: allowed positional argument lists
    tests: str = "none"  # none | one | list
    block: bool = False


_CMP = {"comparator": _TagSpec("s", "comparator")}
_MATCH = {
    "is": _TagSpec(None, "match"),
    "contains": _TagSpec(None, "match"),
    "matches": _TagSpec(None, "match"),
    "regex": _TagSpec(None, "match", "regex"),
    "value": _TagSpec("s", "match", "relational"),
    "count": _TagSpec("s", "match", "relational"),
}
_ADDR = {
    "all": _TagSpec(None, "addrpart"),
    "localpart": _TagSpec(None, "addrpart"),
    "domain": _TagSpec(None, "addrpart"),
    "user": _TagSpec(None, "addrpart", "subaddress"),
    "detail": _TagSpec(None, "addrpart", "subaddress"),
}
_INDEX = {"index": _TagSpec("n", None, "index"), "last": _TagSpec(None, None, "index")}
_MT = {**_CMP, **_MATCH}


def _s(
    test: bool, ext: str | tuple[str, ...] | None, tags: Mapping[str, _TagSpec], *sigs: str, tests: str = "none",
    block: bool = False,
) -> _Spec:  # fmt: skip
    return _Spec(test, ext, tags, sigs, tests, block)


SPECS: Mapping[str, _Spec] = {
    # RFC 5228 §3 control, §4 actions, §5 tests
    "require": _s(False, None, {}, "l"),
    "if": _s(False, None, {}, "", tests="one", block=True),
    "elsif": _s(False, None, {}, "", tests="one", block=True),
    "else": _s(False, None, {}, "", block=True),
    "stop": _s(False, None, {}, ""),
    "keep": _s(False, None, {"flags": _TagSpec("l", None, "imap4flags")}, ""),
    "discard": _s(False, None, {}, ""),
    "redirect": _s(False, None, {"copy": _TagSpec(None, None, "copy")}, "s"),
    "fileinto": _s(
        False,
        "fileinto",
        {
            "copy": _TagSpec(None, None, "copy"),
            "flags": _TagSpec("l", None, "imap4flags"),
            "create": _TagSpec(None, None, "mailbox"),
            "mailboxid": _TagSpec("s", None, "mailboxid"),
        },
        "s",
    ),  # fmt: skip
    "address": _s(True, None, {**_MT, **_ADDR, **_INDEX}, "ll"),
    "envelope": _s(True, "envelope", {**_MT, **_ADDR}, "ll"),
    "header": _s(True, None, {**_MT, **_INDEX}, "ll"),
    "exists": _s(True, None, {}, "l"),
    "size": _s(True, None, {"over": _TagSpec(None, "size"), "under": _TagSpec(None, "size")}, "n"),
    "allof": _s(True, None, {}, "", tests="list"),
    "anyof": _s(True, None, {}, "", tests="list"),
    "not": _s(True, None, {}, "", tests="one"),
    "true": _s(True, None, {}, ""),
    "false": _s(True, None, {}, ""),
    # RFC 5429
    "reject": _s(False, "reject", {}, "s"),
    "ereject": _s(False, "ereject", {}, "s"),
    # RFC 5173
    "body": _s(
        True,
        "body",
        {
            **_MT,
            "raw": _TagSpec(None, "transform"),
            "content": _TagSpec("l", "transform"),
            "text": _TagSpec(None, "transform"),
        },
        "l",
    ),  # fmt: skip
    # RFC 5232
    "setflag": _s(False, "imap4flags", {}, "l", "sl"),
    "addflag": _s(False, "imap4flags", {}, "l", "sl"),
    "removeflag": _s(False, "imap4flags", {}, "l", "sl"),
    "hasflag": _s(True, "imap4flags", _MT, "l", "ll"),
    # RFC 5229
    "set": _s(
        False,
        "variables",
        {
            m: _TagSpec(None, p)
            for m, p in (
                ("lower", "case"),
                ("upper", "case"),
                ("lowerfirst", "first"),
                ("upperfirst", "first"),
                ("quotewildcard", "quote"),
                ("quoteregex", "quoteregex"),
                ("length", "length"),
            )
        },
        "ss",
    ),  # fmt: skip
    "string": _s(True, "variables", _MT, "ll"),
    # RFC 5230 / RFC 6131
    "vacation": _s(
        False,
        "vacation",
        {
            "days": _TagSpec("n", "period"),
            "seconds": _TagSpec("n", "period", "vacation-seconds"),
            "subject": _TagSpec("s"),
            "from": _TagSpec("s"),
            "addresses": _TagSpec("l"),
            "mime": _TagSpec(None),
            "handle": _TagSpec("s"),
        },
        "s",
    ),  # fmt: skip
    # RFC 5260
    "date": _s(
        True,
        "date",
        {**_MT, **_INDEX, "zone": _TagSpec("s", "zone"), "originalzone": _TagSpec(None, "zone")},
        "ssl",
    ),
    "currentdate": _s(True, "date", {**_MT, "zone": _TagSpec("s", "zone")}, "sl"),
    # RFC 5235
    "spamtest": _s(True, "spamtest", {**_MT, "percent": _TagSpec(None, None, "spamtestplus")}, "s"),
    "virustest": _s(True, "virustest", _MT, "s"),
    # RFC 7352
    "duplicate": _s(
        True,
        "duplicate",
        {
            "handle": _TagSpec("s"),
            "header": _TagSpec("s", "id"),
            "uniqueid": _TagSpec("s", "id"),
            "seconds": _TagSpec("n"),
            "last": _TagSpec(None),
        },
        "",
    ),  # fmt: skip
    # RFC 6609
    "include": _s(
        False,
        "include",
        {
            "personal": _TagSpec(None, "location"),
            "global": _TagSpec(None, "location"),
            "once": _TagSpec(None),
            "optional": _TagSpec(None),
        },
        "s",
    ),  # fmt: skip
    "return": _s(False, "include", {}, ""),
    "global": _s(False, ("include", "variables"), {}, "l"),
    # RFC 5293
    "addheader": _s(False, "editheader", {"last": _TagSpec(None)}, "ss"),
    "deleteheader": _s(
        False, "editheader", {**_MT, "index": _TagSpec("n"), "last": _TagSpec(None)}, "s", "sl"
    ),
    # RFC 5435
    "notify": _s(
        False,
        "enotify",
        {
            "from": _TagSpec("s"),
            "importance": _TagSpec("s"),
            "options": _TagSpec("l"),
            "message": _TagSpec("s"),
        },
        "s",
    ),  # fmt: skip
    "valid_notify_method": _s(True, "enotify", {}, "l"),
    "notify_method_capability": _s(True, "enotify", _MT, "ssl"),
    # RFC 5183
    "environment": _s(True, "environment", _MT, "sl"),
    # RFC 5463
    "ihave": _s(True, "ihave", {}, "l"),
    "error": _s(False, "ihave", {}, "s"),
    # RFC 5490 / RFC 9042
    "mailboxexists": _s(True, "mailbox", {}, "l"),
    "mailboxidexists": _s(True, "mailboxid", {}, "l"),
}


@dataclass(frozen=True, slots=True)
class Node:
    """A validated command or test: tagged arguments by name, positional arguments in order."""

    name: str
    tags: Mapping[str, StringList | Number | None]
    positional: tuple[StringList | Number, ...]
    tests: tuple[Node, ...]
    block: tuple[Node, ...] | None
    line: int
    column: int

    def tag_strings(self, name: str) -> tuple[str, ...] | None:
        v = self.tags.get(name)
        return v.values if isinstance(v, StringList) else None

    def tag_string(self, name: str) -> str | None:
        v = self.tag_strings(name)
        return v[0] if v else None

    def tag_number(self, name: str) -> int | None:
        v = self.tags.get(name)
        return v.value if isinstance(v, Number) else None


@dataclass(frozen=True, slots=True)
class ValidatedScript:
    commands: tuple[Node, ...]
    requires: frozenset[str]
    uses_variables: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)


_ENC = re.compile(r"\$\{(hex|unicode):([\s0-9a-fA-F]*)\}", re.IGNORECASE)


def _decode_encoded(s: str, line: int, column: int) -> str:
    """RFC 5228 §2.4.2.4 encoded-character: ``${hex:41 42}`` (octets, UTF-8) and ``${unicode:263A}``."""

    def rep(m: re.Match[str]) -> str:
        kind, body = m.group(1).lower(), m.group(2).split()
        if not body:
            return m.group(0)
        if kind == "hex":
            if any(len(h) > 2 for h in body):
                return m.group(0)
            return bytes(int(h, 16) for h in body).decode("utf-8", "replace")
        out = []
        for h in body:
            if len(h) > 6:
                return m.group(0)
            cp = int(h, 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:  # §2.4.2.4: not a scalar value -> error
                raise SieveValidationError(
                    line, column, f"invalid unicode character {h} in encoded-character"
                )
            out.append(chr(cp))
        return "".join(out)

    return _ENC.sub(rep, s) if "${" in s else s


class _Validator:
    def __init__(self, limits: SieveLimits) -> None:
        self.limits = limits

    def arg_enc(self, a: Argument, req: frozenset[str]) -> Argument:
        if isinstance(a, StringList) and "encoded-character" in req:
            return StringList(
                tuple(_decode_encoded(v, a.line, a.column) for v in a.values), a.is_list, a.line, a.column
            )
        return a

    def need(
        self, ext: str | tuple[str, ...] | None, req: frozenset[str], line: int, col: int, what: str
    ) -> None:
        if ext is None:
            return
        exts = (ext,) if isinstance(ext, str) else ext
        for e in exts:
            if e not in req:
                raise SieveValidationError(line, col, f'{what} requires the {e!r} extension (require "{e}";)')

    def node(self, c: Command | Test, req: frozenset[str], is_test: bool) -> Node:
        spec = SPECS.get(c.name)
        kind = "test" if is_test else "command"
        if spec is None or spec.test != is_test:
            raise SieveValidationError(c.line, c.column, f"unknown {kind} {c.name!r}")
        self.need(spec.ext, req, c.line, c.column, f"{kind} {c.name!r}")
        tags: dict[str, StringList | Number | None] = {}
        groups: dict[str, str] = {}
        pos: list[StringList | Number] = []
        args = [self.arg_enc(a, req) for a in c.args]
        i = 0
        while i < len(args):
            a = args[i]
            if isinstance(a, Tag):
                if pos:
                    raise SieveValidationError(
                        a.line, a.column, f"tag :{a.name} after positional arguments of {c.name!r}"
                    )
                ts = spec.tags.get(a.name)
                if ts is None:
                    raise SieveValidationError(
                        a.line, a.column, f"unknown tag :{a.name} for {kind} {c.name!r}"
                    )
                self.need(ts.ext, req, a.line, a.column, f"tag :{a.name}")
                if a.name in tags:
                    raise SieveValidationError(a.line, a.column, f"tag :{a.name} given twice")
                if ts.group is not None:
                    if ts.group in groups:
                        raise SieveValidationError(
                            a.line,
                            a.column,
                            f"tag :{a.name} conflicts with :{groups[ts.group]} in {c.name!r}",
                        )
                    groups[ts.group] = a.name
                if ts.arg is None:
                    tags[a.name] = None
                else:
                    if i + 1 >= len(args):
                        raise SieveValidationError(a.line, a.column, f"tag :{a.name} needs an argument")
                    v = args[i + 1]
                    if not _fits(v, ts.arg):
                        raise SieveValidationError(
                            v.line, v.column, f"tag :{a.name} needs {_KIND_NAMES[ts.arg]}"
                        )
                    assert not isinstance(v, Tag)
                    tags[a.name] = v
                    i += 1
            else:
                pos.append(a)
            i += 1
        sig = "".join("n" if isinstance(p, Number) else ("L" if len(p.values) > 1 else "s") for p in pos)
        if not any(_sig_ok(sig, want) for want in spec.signatures):
            want = " or ".join(" ".join(_KIND_NAMES[k] for k in w) or "no arguments" for w in spec.signatures)
            raise SieveValidationError(c.line, c.column, f"{c.name!r} takes {want}")
        self.semantic(c, tags, pos, req)
        ntests = len(c.tests)
        if spec.tests == "none" and ntests:
            raise SieveValidationError(c.tests[0].line, c.tests[0].column, f"{c.name!r} takes no test")
        if spec.tests == "one" and (ntests != 1 or (isinstance(c, Test) and False)):
            raise SieveValidationError(c.line, c.column, f"{c.name!r} needs exactly one test")
        if spec.tests == "list" and ntests == 0:
            raise SieveValidationError(c.line, c.column, f"{c.name!r} needs a test list")
        if isinstance(c, Test) and spec.tests == "one" and len(c.tests) == 1 and c.name == "not":
            pass
        tests = tuple(self.node(t, req, True) for t in c.tests)
        block: tuple[Node, ...] | None = None
        if isinstance(c, Command):
            if spec.block and c.block is None:
                raise SieveValidationError(c.line, c.column, f"{c.name!r} needs a block {{ ... }}")
            if not spec.block and c.block is not None:
                raise SieveValidationError(c.line, c.column, f"{c.name!r} takes no block (missing ';'?)")
            if c.block is not None:
                breq = req
                if len(c.tests) == 1 and c.tests[0].name == "ihave" and c.name in ("if", "elsif"):
                    names = {v for a in c.tests[0].args if isinstance(a, StringList) for v in a.values}
                    if not names <= set(EXTENSIONS):
                        block = ()  # RFC 5463 §4: never runs, so not validated
                    else:
                        breq = _expand(req | names)
                if block is None:
                    block = self.block(c.block, breq, top=False)
        return Node(c.name, tags, tuple(pos), tests, block, c.line, c.column)

    def semantic(
        self, c: Command | Test, tags: Mapping[str, StringList | Number | None], pos: list[StringList | Number],
        req: frozenset[str],
    ) -> None:  # fmt: skip
        cmp_arg = tags.get("comparator")
        if isinstance(cmp_arg, StringList):
            name = cmp_arg.values[0].lower()
            if name not in COMPARATORS:
                raise SieveValidationError(cmp_arg.line, cmp_arg.column, f"unknown comparator {name!r}")
            if name == "i;ascii-numeric" and f"comparator-{name}" not in req:
                raise SieveValidationError(
                    cmp_arg.line,
                    cmp_arg.column,
                    f'comparator {name!r} must be required ("comparator-{name}")',
                )
        for rel in ("value", "count"):
            r = tags.get(rel)
            if isinstance(r, StringList) and r.values[0].lower() not in RELATIONAL_OPS:
                raise SieveValidationError(r.line, r.column, f"unknown relational operator {r.values[0]!r}")
        if "last" in tags and "index" not in tags and c.name in ("header", "address", "date", "deleteheader"):
            raise SieveValidationError(c.line, c.column, ":last needs :index")
        idx = tags.get("index")
        if isinstance(idx, Number) and idx.value < 1:
            raise SieveValidationError(idx.line, idx.column, ":index must be 1 or more")
        if c.name in ("date", "currentdate"):
            part = pos[-2]
            assert isinstance(part, StringList)
            if part.values[0].lower() not in DATE_PARTS:
                raise SieveValidationError(part.line, part.column, f"unknown date part {part.values[0]!r}")
        if c.name == "set":
            var = pos[0]
            assert isinstance(var, StringList)
            if not _VARNAME.fullmatch(var.values[0]):
                raise SieveValidationError(var.line, var.column, f"invalid variable name {var.values[0]!r}")

    def block(self, cmds: tuple[Command, ...], req: frozenset[str], top: bool) -> tuple[Node, ...]:
        out: list[Node] = []
        prev = ""
        for c in cmds:
            if c.name == "require":
                if not top or (out and any(n.name != "require" for n in out)):
                    raise SieveValidationError(c.line, c.column, "require must come before any other command")
            if c.name in ("elsif", "else") and prev not in ("if", "elsif"):
                raise SieveValidationError(c.line, c.column, f"{c.name!r} without a preceding 'if'")
            out.append(self.node(c, req, False))
            prev = c.name
        return tuple(out)

    def script(self, cmds: tuple[Command, ...]) -> ValidatedScript:
        req: set[str] = set()
        for c in cmds:
            if c.name != "require":
                break
            for a in c.args:
                if isinstance(a, StringList):
                    for v in a.values:
                        if v.lower() not in EXTENSIONS:
                            raise SieveValidationError(a.line, a.column, f"unknown extension {v!r}")
                        req.add(v.lower())
        full = _expand(frozenset(req))
        nodes = self.block(cmds, full, top=True)
        return ValidatedScript(tuple(n for n in nodes if n.name != "require"), full, "variables" in full)


_VARNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_KIND_NAMES = {"s": "a string", "l": "a string list", "n": "a number"}


def _fits(a: Argument, kind: str) -> bool:
    if kind == "n":
        return isinstance(a, Number)
    if kind == "s":
        return isinstance(a, StringList) and (not a.is_list or len(a.values) == 1)
    return isinstance(a, StringList)


def _sig_ok(have: str, want: str) -> bool:
    # have: s (a string or one-element list), L (longer list), n; want: s, l, n
    if len(have) != len(want):
        return False
    return all(w == "l" and h in "sL" or w == h for h, w in zip(have, want, strict=True))


def _expand(req: frozenset[str] | set[str]) -> frozenset[str]:
    out = set(req) | {"comparator-i;octet", "comparator-i;ascii-casemap"}
    for r in list(out):
        out.update(IMPLIED.get(r, ()))
    return frozenset(out)


def validate(commands: tuple[Command, ...], limits: SieveLimits = SieveLimits()) -> ValidatedScript:
    return _Validator(limits).script(commands)


def parse_and_validate(text: str | bytes, limits: SieveLimits = SieveLimits()) -> ValidatedScript:
    """Lex, parse and validate a whole script; raises a :class:`SieveError` subclass with position."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > limits.max_script_size:
        raise SieveLimitError(1, 1, f"script is too large ({size} octets; limit {limits.max_script_size})")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            before = e.object[: e.start]
            line = before.count(b"\n") + 1
            col = e.start - (before.rfind(b"\n") + 1) + 1
            raise SieveValidationError(line, col, "script is not valid UTF-8") from None
    return validate(parse(text, limits), limits)
