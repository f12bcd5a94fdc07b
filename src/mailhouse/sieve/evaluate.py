"""The Sieve evaluator: runs a compiled :class:`Script` against a :class:`SieveContext`.

RFC 5228: §2.10.2 implicit keep (cancelled by fileinto/redirect/discard/reject/keep, not by
:copy), §2.10.6 duplicate actions are performed once and run-time errors make the caller keep the
message (the result then carries ``error`` and no actions), §3.1 if/elsif/else, §3.3 stop.
Extensions: see the module docstrings of :mod:`mailhouse.proto.sieve.validate` and the per-command
methods below (each cites its RFC).

Invariants: the evaluator never raises for a script problem (only :class:`SieveRuntimeError`
inside, turned into ``SieveResult.error``); run time is bounded by ``SieveLimits.max_cpu_seconds``
(checked before each command and test; time spent awaiting the caller's lookups is not counted),
actions by ``max_actions``, redirects by ``max_redirects``, include nesting by
``max_include_depth``; variable values are cut to ``max_variable_size``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import html
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailhouse import __version__
from mailhouse.message.headers import decode_bytes, decode_words
from mailhouse.message.parse import MessagePart, iter_parts, parse_message
from mailhouse.message.sections import decode_transfer_encoding
from mailhouse.proto.sieve.ast import Number, StringList
from mailhouse.proto.sieve.errors import SieveRuntimeError
from mailhouse.proto.sieve.limits import SieveLimits
from mailhouse.proto.sieve.validate import Node
from mailhouse.sieve.actions import (
    Action,
    AddHeader,
    DeleteHeader,
    Discard,
    FileInto,
    Keep,
    Notify,
    Redirect,
    Reject,
    SieveResult,
    Vacation,
)
from mailhouse.sieve.context import SieveContext
from mailhouse.sieve.editheader import PROTECTED, apply_header_edits, valid_field_name
from mailhouse.sieve.match import Matcher
from mailhouse.sieve.script import Location, Script
from mailhouse.sieve.vacation import addresses_in, skip_reason

__all__ = ["evaluate", "valid_notify_method", "SUBADDRESS_SEPARATOR"]

SUBADDRESS_SEPARATOR = "+"  # RFC 5233 §1: implementation-defined; Mailhouse uses "+"
DEFAULT_VACATION_DAYS = 7  # RFC 5230 §4.1: "7 days is recommended"
MIN_VACATION_SECONDS = 1
DEFAULT_DUPLICATE_SECONDS = 7 * 86400  # RFC 7352 §3.2: implementation default
_VAR = re.compile(r"\$\{(\d+|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
_ADDR = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+\.?[^\s@<>()\[\],;:\"]*")


class _Stop(Exception):
    """RFC 5228 §3.3 stop."""


class _Return(Exception):
    """RFC 6609 §3.3 return from an included script."""


@dataclass(slots=True)
class _Frame:
    script: Script
    local: dict[str, str] = field(default_factory=dict)
    global_names: set[str] = field(default_factory=set)


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
    return bool(addrs) and all(_ADDR.fullmatch(a) for a in addrs)


def _valid_redirect(addr: str) -> bool:
    return bool(_ADDR.fullmatch(addr.strip().strip("<>")))


def _flag_list(values: tuple[str, ...] | list[str]) -> list[str]:
    """RFC 5232 §3: space-separated flags, duplicates (case-insensitive) dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for v in values:
        for f in v.split():
            if f.lower() not in seen:
                seen.add(f.lower())
                out.append(f)
    return out


def _strip_html(s: str) -> str:
    s = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", s)
    return html.unescape(re.sub(r"<[^>]*>", " ", s))


_TZ = re.compile(r"([+-])(\d\d)(\d\d)")


def _zone(z: str) -> dt.tzinfo | None:
    m = _TZ.fullmatch(z.strip())
    if not m:
        return None
    off = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return dt.timezone(-off if m.group(1) == "-" else off)


def _fmt_zone(d: dt.datetime) -> str:
    off = d.utcoffset() or dt.timedelta()
    sign = "-" if off < dt.timedelta() else "+"
    mins = abs(int(off.total_seconds())) // 60
    return f"{sign}{mins // 60:02d}{mins % 60:02d}"


def date_part(d: dt.datetime, part: str) -> str:
    """RFC 5260 §4.2 date-part values."""
    if part == "year":
        return f"{d.year:04d}"
    if part == "month":
        return f"{d.month:02d}"
    if part == "day":
        return f"{d.day:02d}"
    if part == "date":
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    if part == "julian":  # Modified Julian Day
        return str((d.date() - dt.date(1858, 11, 17)).days)
    if part == "hour":
        return f"{d.hour:02d}"
    if part == "minute":
        return f"{d.minute:02d}"
    if part == "second":
        return f"{d.second:02d}"
    if part == "time":
        return f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if part == "iso8601":
        z = _fmt_zone(d)
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}{z[:3]}:{z[3:]}"
    if part == "std11":
        return email.utils.format_datetime(d).replace("-0000", "+0000")
    if part == "zone":
        return _fmt_zone(d)
    if part == "weekday":
        return str((d.weekday() + 1) % 7)  # 0 = Sunday
    raise SieveRuntimeError(0, 0, f"unknown date part {part!r}")


class _Run:
    def __init__(
        self, ctx: SieveContext, includes: Mapping[tuple[Location, str], Script], limits: SieveLimits
    ) -> None:
        self.ctx = ctx
        self.includes = includes
        self.limits = limits
        self.raw = ctx.message
        self._tree: MessagePart | None = None
        self.actions: list[Action] = []
        self.implicit_keep = True
        self.flags: list[str] = []
        self.globals: dict[str, str] = {}
        self.match_vars: list[str] = []
        self.started = time.perf_counter()
        self.waited = 0.0
        self.redirects = 0
        self.counted = 0
        self.vacation = False
        self.once: set[tuple[Location, str]] = set()
        self.stack: list[tuple[Location, str]] = []
        self.dup_keys: list[tuple[str, int]] = []
        self.edited = False

    # -- message ---------------------------------------------------------------------------------
    @property
    def tree(self) -> MessagePart:
        if self._tree is None:
            self._tree = parse_message(self.raw)
        return self._tree

    def header_values(self, names: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for n in names:
            out.extend(decode_words(v).strip() for v in self.tree.get_all(n))
        return out

    # -- budget ----------------------------------------------------------------------------------
    def tick(self, node: Node) -> None:
        spent = time.perf_counter() - self.started - self.waited
        if spent > self.limits.max_cpu_seconds:
            raise SieveRuntimeError(
                node.line, node.column, f"script ran too long (limit {self.limits.max_cpu_seconds}s)"
            )

    async def wait(self, coro: object) -> object:
        t = time.perf_counter()
        try:
            return await coro  # type: ignore[misc]
        finally:
            self.waited += time.perf_counter() - t

    # -- variables (RFC 5229) --------------------------------------------------------------------
    def _slot(self, frame: _Frame, name: str) -> tuple[dict[str, str], str]:
        n = name.lower()
        if n.startswith("global."):
            return self.globals, n[7:]
        if n in frame.global_names:
            return self.globals, n
        return frame.local, n

    def get_var(self, frame: _Frame, name: str) -> str:
        if name.isdigit():
            i = int(name)
            return self.match_vars[i] if i < len(self.match_vars) else ""
        d, k = self._slot(frame, name)
        return d.get(k, "")

    def set_var(self, frame: _Frame, name: str, value: str, node: Node) -> None:
        d, k = self._slot(frame, name)
        if k not in d and len(frame.local) + len(self.globals) >= self.limits.max_variables:
            raise SieveRuntimeError(
                node.line, node.column, f"too many variables (limit {self.limits.max_variables})"
            )
        d[k] = value[: self.limits.max_variable_size]

    def expand(self, frame: _Frame, s: str) -> str:
        if "variables" not in frame.script.requires or "${" not in s:
            return s
        return _VAR.sub(lambda m: self.get_var(frame, m.group(1)), s)

    def strs(self, frame: _Frame, arg: StringList | Number | None) -> tuple[str, ...]:
        if not isinstance(arg, StringList):
            return ()
        return tuple(self.expand(frame, v) for v in arg.values)

    def str1(self, frame: _Frame, arg: StringList | Number | None) -> str:
        v = self.strs(frame, arg)
        return v[0] if v else ""

    # -- actions ---------------------------------------------------------------------------------
    def add(self, node: Node, action: Action) -> None:
        # §2.10.6: identical fileinto / redirect / keep are performed once
        for a in self.actions:
            if (
                (
                    isinstance(a, FileInto)
                    and isinstance(action, FileInto)
                    and a.mailbox == action.mailbox
                    and a.copy == action.copy
                )
                or (
                    isinstance(a, Redirect)
                    and isinstance(action, Redirect)
                    and a.address.lower() == action.address.lower()
                )
                or (isinstance(a, Keep) and isinstance(action, Keep))
                or (isinstance(a, Discard) and isinstance(action, Discard))
            ):
                return
        self.counted += 1
        if self.counted > self.limits.max_actions:
            raise SieveRuntimeError(
                node.line, node.column, f"too many actions (limit {self.limits.max_actions})"
            )
        rej = any(isinstance(a, Reject) for a in self.actions)
        if isinstance(action, Reject) and any(
            isinstance(a, (Keep, FileInto, Vacation, Reject)) for a in self.actions
        ):
            raise SieveRuntimeError(
                node.line,
                node.column,
                "reject cannot be combined with keep, fileinto or vacation (RFC 5429 §2.1)",
            )
        if rej and isinstance(action, (Keep, FileInto, Vacation)):
            raise SieveRuntimeError(
                node.line, node.column, f"{node.name} cannot follow reject (RFC 5429 §2.1)"
            )
        self.actions.append(action)

    # -- running ---------------------------------------------------------------------------------
    async def run_block(self, frame: _Frame, nodes: tuple[Node, ...]) -> None:
        taken = False
        for n in nodes:
            if n.name == "if":
                taken = await self.test(frame, n.tests[0])
                if taken:
                    await self.run_block(frame, n.block or ())
            elif n.name == "elsif":
                if not taken:
                    taken = await self.test(frame, n.tests[0])
                    if taken:
                        await self.run_block(frame, n.block or ())
            elif n.name == "else":
                if not taken:
                    await self.run_block(frame, n.block or ())
                taken = True
            else:
                await self.command(frame, n)

    async def command(self, frame: _Frame, n: Node) -> None:
        self.tick(n)
        try:
            await self._command(frame, n)
        except SieveRuntimeError as e:
            if e.line == 0:
                raise SieveRuntimeError(n.line, n.column, e.message) from None
            raise

    async def _command(self, frame: _Frame, n: Node) -> None:
        name = n.name
        if name == "stop":
            raise _Stop
        if name == "return":
            raise _Return
        if name == "keep":
            flags = _flag_list(self.strs(frame, n.tags["flags"])) if "flags" in n.tags else list(self.flags)
            self.add(n, Keep(tuple(flags)))
            self.implicit_keep = False
        elif name == "discard":
            self.add(n, Discard())
            self.implicit_keep = False
        elif name == "fileinto":
            box = self.str1(frame, n.positional[0])
            flags = _flag_list(self.strs(frame, n.tags["flags"])) if "flags" in n.tags else list(self.flags)
            copy = "copy" in n.tags
            mid = self.str1(frame, n.tags["mailboxid"]) if "mailboxid" in n.tags else None
            self.add(n, FileInto(box, tuple(flags), "create" in n.tags, copy, mid))
            if not copy:
                self.implicit_keep = False
        elif name == "redirect":
            addr = self.str1(frame, n.positional[0]).strip()
            if not _valid_redirect(addr):
                raise SieveRuntimeError(n.line, n.column, f"invalid redirect address {addr!r}")
            before = len(self.actions)
            copy = "copy" in n.tags
            self.add(n, Redirect(addr.strip("<>"), copy))
            if len(self.actions) > before:
                self.redirects += 1
                if self.redirects > self.limits.max_redirects:
                    raise SieveRuntimeError(
                        n.line, n.column, f"too many redirects (limit {self.limits.max_redirects})"
                    )
            if not copy:
                self.implicit_keep = False
        elif name in ("reject", "ereject"):
            self.add(n, Reject(self.str1(frame, n.positional[0]), name == "ereject"))
            self.implicit_keep = False
        elif name in ("setflag", "addflag", "removeflag"):
            await self.flag_command(frame, n)
        elif name == "set":
            self.set_command(frame, n)
        elif name == "vacation":
            self.vacation_command(frame, n)
        elif name == "include":
            await self.include(frame, n)
        elif name == "global":
            for v in self.strs(frame, n.positional[0]):
                frame.global_names.add(v.lower())
        elif name == "addheader":
            self.addheader(frame, n)
        elif name == "deleteheader":
            self.deleteheader(frame, n)
        elif name == "notify":
            method = self.str1(frame, n.positional[0])
            if not valid_notify_method(method):
                raise SieveRuntimeError(n.line, n.column, f"invalid or unsupported notify method {method!r}")
            imp = self.str1(frame, n.tags.get("importance")) or "2"
            if imp not in ("1", "2", "3"):
                raise SieveRuntimeError(n.line, n.column, f"invalid :importance {imp!r} (RFC 5435 §3.5)")
            self.add(
                n,
                Notify(
                    method,
                    self.str1(frame, n.tags.get("from")) or None,
                    imp,
                    self.strs(frame, n.tags.get("options")),
                    self.str1(frame, n.tags.get("message")) or None,
                ),
            )
        elif name == "error":
            raise SieveRuntimeError(n.line, n.column, f"script error: {self.str1(frame, n.positional[0])}")
        else:  # pragma: no cover - the validator knows every command
            raise SieveRuntimeError(n.line, n.column, f"command {name!r} is not implemented")

    async def flag_command(self, frame: _Frame, n: Node) -> None:
        """RFC 5232 §5: setflag/addflag/removeflag on the internal variable or a named one."""
        var = self.str1(frame, n.positional[0]) if len(n.positional) == 2 else None
        new = _flag_list(self.strs(frame, n.positional[-1]))
        cur = _flag_list([self.get_var(frame, var)]) if var else self.flags
        if n.name == "setflag":
            res = new
        elif n.name == "addflag":
            res = _flag_list([*cur, *new])
        else:
            drop = {f.lower() for f in new}
            res = [f for f in cur if f.lower() not in drop]
        if var:
            self.set_var(frame, var, " ".join(res), n)
        else:
            self.flags = res

    def set_command(self, frame: _Frame, n: Node) -> None:
        """RFC 5229 §4: modifiers applied by precedence (40 case, 30 first, 20 quote, 10 length)."""
        name = self.str1(frame, n.positional[0]) if False else n.positional[0].values[0]  # type: ignore[union-attr]
        value = self.str1(frame, n.positional[1])
        t = n.tags
        if "lower" in t:
            value = value.lower()
        if "upper" in t:
            value = value.upper()
        if "lowerfirst" in t:
            value = value[:1].lower() + value[1:]
        if "upperfirst" in t:
            value = value[:1].upper() + value[1:]
        if "quotewildcard" in t:
            value = re.sub(r"([*?\\])", r"\\\1", value)
        if "quoteregex" in t:
            value = re.sub(r"([\\^$.\[\]|()?*+{}])", r"\\\1", value)
        if "length" in t:
            value = str(len(value))
        self.set_var(frame, name, value, n)

    def vacation_command(self, frame: _Frame, n: Node) -> None:
        """RFC 5230 §4 (+ RFC 6131 :seconds): one vacation per run; RFC 3834 checks via skip_reason."""
        if self.vacation:
            raise SieveRuntimeError(n.line, n.column, "only one vacation action per run (RFC 5230 §4.7)")
        self.vacation = True
        reason = self.str1(frame, n.positional[0])
        subject = self.str1(frame, n.tags.get("subject")) or None
        from_ = self.str1(frame, n.tags.get("from")) or None
        addrs = self.strs(frame, n.tags.get("addresses"))
        mime = "mime" in n.tags
        if "seconds" in n.tags:
            seconds = max(0, n.tag_number("seconds") or 0)
        else:
            days = n.tag_number("days")
            seconds = (DEFAULT_VACATION_DAYS if days is None else max(1, days)) * 86400
        handle = self.str1(frame, n.tags.get("handle"))
        if not handle:  # RFC 5230 §4.2: derived from the arguments when not given
            raw_h = "\0".join([reason, subject or "", from_ or "", "mime" if mime else ""])
            handle = hashlib.sha256(raw_h.encode()).hexdigest()[:32]
        if subject is None:
            orig = self.header_values(("subject",))
            subject = f"Auto: {orig[0]}" if orig and orig[0] else "Automated reply"
        mine = [self.ctx.envelope_to, self.ctx.original_recipient, *self.ctx.user_addresses, *addrs]
        skip = skip_reason(self.tree, self.ctx.envelope_from, [m for m in mine if m])
        self.add(
            n, Vacation(reason, subject, from_, addrs, seconds, handle, mime, self.ctx.envelope_from, skip)
        )

    async def include(self, frame: _Frame, n: Node) -> None:
        """RFC 6609 §3.2: include; :once, :optional; depth limit and loop detection."""
        loc = Location.GLOBAL if "global" in n.tags else Location.PERSONAL
        key = (loc, self.str1(frame, n.positional[0]))
        if "once" in n.tags and key in self.once:
            return
        script = self.includes.get(key)
        if script is None:
            if "optional" in n.tags:
                return
            raise SieveRuntimeError(n.line, n.column, f"included script {key[1]!r} ({loc.value}) not found")
        if key in self.stack:
            raise SieveRuntimeError(n.line, n.column, f"include loop: {key[1]!r} includes itself")
        if len(self.stack) >= self.limits.max_include_depth:
            raise SieveRuntimeError(
                n.line, n.column, f"includes nested too deep (limit {self.limits.max_include_depth})"
            )
        self.once.add(key)
        self.stack.append(key)
        try:
            await self.run_block(_Frame(script), script.commands)
        except _Return:
            pass
        finally:
            self.stack.pop()

    def addheader(self, frame: _Frame, n: Node) -> None:
        name = self.str1(frame, n.positional[0])
        value = self.str1(frame, n.positional[1])
        if not valid_field_name(name):
            raise SieveRuntimeError(n.line, n.column, f"invalid header field name {name!r}")
        if name.lower() in PROTECTED:  # RFC 5293 §9
            return
        edit = AddHeader(name, value, "last" in n.tags)
        self.add(n, edit)
        self.raw = apply_header_edits(self.raw, [edit])
        self._tree = None

    def deleteheader(self, frame: _Frame, n: Node) -> None:
        name = self.str1(frame, n.positional[0])
        if not valid_field_name(name):
            raise SieveRuntimeError(n.line, n.column, f"invalid header field name {name!r}")
        if name.lower() in PROTECTED:  # RFC 5293 §9
            return
        values = [decode_words(v).strip() for v in self.tree.get_all(name)]
        idx = n.tag_number("index")
        chosen = list(range(len(values)))
        if idx is not None:
            i = len(values) - idx if "last" in n.tags else idx - 1
            chosen = [i] if 0 <= i < len(values) else []
        if len(n.positional) == 2:
            m = self.matcher(n)
            keys = self.strs(frame, n.positional[1])
            chosen = [i for i in chosen if m.any([values[i]], keys)[0]]
        if not chosen:
            return
        edit = DeleteHeader(name, tuple(chosen))
        self.add(n, edit)
        self.raw = apply_header_edits(self.raw, [edit])
        self._tree = None

    # -- tests -----------------------------------------------------------------------------------
    def matcher(self, n: Node) -> Matcher:
        cmp = (n.tag_string("comparator") or "i;ascii-casemap").lower()
        mtype, rel = "is", None
        for t in ("is", "contains", "matches", "regex", "value", "count"):
            if t in n.tags:
                mtype = t
                if t in ("value", "count"):
                    rel = (n.tag_string(t) or "eq").lower()
        return Matcher(
            cmp, mtype, rel, max_input=self.limits.max_regex_input, timeout=self.limits.regex_timeout
        )

    def match(self, frame: _Frame, n: Node, values: list[str], keys_arg: StringList | Number) -> bool:
        m = self.matcher(n)
        ok, groups = m.any(values, self.strs(frame, keys_arg))
        if ok and groups is not None:  # RFC 5229 §3.2: changed only by a successful match
            self.match_vars = groups[:10]
        return ok

    def pick_index(self, n: Node, values: list[str]) -> list[str]:
        """RFC 5260 §6: :index n (:last counts from the bottom)."""
        idx = n.tag_number("index")
        if idx is None:
            return values
        i = len(values) - idx if "last" in n.tags else idx - 1
        return [values[i]] if 0 <= i < len(values) else []

    def address_parts(self, n: Node, addrs: list[str]) -> list[str]:
        """RFC 5228 §2.7.4 address parts; RFC 5233 :user/:detail with separator "+"."""
        out: list[str] = []
        for a in addrs:
            if not a:  # the null reverse-path is "" whatever the part (§5.4)
                out.append("")
                continue
            local, _, domain = a.rpartition("@") if "@" in a else (a, "", "")
            if "localpart" in n.tags:
                out.append(local)
            elif "domain" in n.tags:
                out.append(domain)
            elif "user" in n.tags:
                out.append(local.split(SUBADDRESS_SEPARATOR, 1)[0])
            elif "detail" in n.tags:
                if SUBADDRESS_SEPARATOR in local:
                    out.append(local.split(SUBADDRESS_SEPARATOR, 1)[1])
            else:
                out.append(a)
        return out

    async def test(self, frame: _Frame, n: Node) -> bool:
        self.tick(n)
        try:
            return await self._test(frame, n)
        except SieveRuntimeError as e:
            if e.line == 0:
                raise SieveRuntimeError(n.line, n.column, e.message) from None
            raise

    async def _test(self, frame: _Frame, n: Node) -> bool:
        name = n.name
        pos = n.positional
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not await self.test(frame, n.tests[0])
        if name == "allof":
            for t in n.tests:
                if not await self.test(frame, t):
                    return False
            return True
        if name == "anyof":
            for t in n.tests:
                if await self.test(frame, t):
                    return True
            return False
        if name == "exists":
            return all(self.tree.get(h) is not None for h in self.strs(frame, pos[0]))
        if name == "size":
            limit = pos[0].value if isinstance(pos[0], Number) else 0
            return len(self.raw) > limit if "over" in n.tags else len(self.raw) < limit
        if name == "header":
            names = self.strs(frame, pos[0])
            values: list[str] = []
            for h in names:
                values.extend(self.pick_index(n, self.header_values((h,))))
            return self.match(frame, n, values, pos[1])
        if name == "address":
            values = []
            for h in self.strs(frame, pos[0]):
                found = addresses_in(self.tree, (h,))
                values.extend(self.address_parts(n, self.pick_index(n, found)))
            return self.match(frame, n, values, pos[1])
        if name == "envelope":
            addrs: list[str] = []
            for part in self.strs(frame, pos[0]):
                p = part.lower()
                if p == "from":
                    addrs.append(self.ctx.envelope_from)
                elif p == "to":
                    addrs.append(self.ctx.envelope_to)
            return self.match(frame, n, self.address_parts(n, addrs), pos[1])
        if name == "body":
            return self.match(frame, n, self.body_texts(frame, n), pos[0])
        if name == "string":
            return self.match(
                frame, n, [v for v in self.strs(frame, pos[0]) if v or "count" not in n.tags], pos[1]
            )
        if name == "hasflag":
            if len(pos) == 2:
                src = _flag_list([self.get_var(frame, v) for v in self.strs(frame, pos[0])])
            else:
                src = self.flags
            return self.match(frame, n, list(src), pos[-1])
        if name in ("date", "currentdate"):
            return self.date_test(frame, n)
        if name == "spamtest":
            pct = self.ctx.spam_percent
            if "percent" in n.tags:
                value = "0" if pct is None else str(max(0, min(100, pct)))
            else:  # RFC 5235 §3.2: 1 (not spam) .. 10 (spam); 0 = not tested
                value = "0" if pct is None else str(1 + round(max(0, min(100, pct)) * 9 / 100))
            return self.match(frame, n, [value], pos[0])
        if name == "virustest":
            v = self.ctx.virus_level
            return self.match(frame, n, ["0" if v is None else str(max(1, min(5, v)))], pos[0])
        if name == "duplicate":
            return await self.duplicate(frame, n)
        if name == "environment":
            items = {
                "name": "Mailhouse",
                "version": __version__,
                **{k.lower(): v for k, v in self.ctx.environment.items()},
            }
            item = self.str1(frame, pos[0]).lower()
            if item not in items:
                return False
            return self.match(frame, n, [items[item]], pos[1])
        if name == "ihave":
            from mailhouse.proto.sieve.validate import EXTENSIONS

            return all(e.lower() in EXTENSIONS for e in self.strs(frame, pos[0]))
        if name == "mailboxexists":
            for box in self.strs(frame, pos[0]):
                if not await self.wait(self.ctx.mailbox_exists(box)):
                    return False
            return True
        if name == "mailboxidexists":
            for mid in self.strs(frame, pos[0]):
                if not await self.wait(self.ctx.mailboxid_exists(mid)):
                    return False
            return True
        if name == "valid_notify_method":
            return all(valid_notify_method(u) for u in self.strs(frame, pos[0]))
        if name == "notify_method_capability":
            uri, cap = self.str1(frame, pos[0]), self.str1(frame, pos[1]).lower()
            if not valid_notify_method(uri) or cap != "online":
                return False
            return self.match(frame, n, ["maybe"], pos[2])  # RFC 5436 §2.3: mailto is "maybe"
        raise SieveRuntimeError(n.line, n.column, f"test {name!r} is not implemented")  # pragma: no cover

    def body_texts(self, frame: _Frame, n: Node) -> list[str]:
        """RFC 5173 §5: :raw (undecoded body), :content types (decoded), :text (default, text parts)."""
        cap = self.limits.max_body_size
        tree = self.tree
        if "raw" in n.tags:
            return [self.raw[tree.body_start : tree.body_start + cap].decode("utf-8", "replace")]
        types = [t.lower() for t in self.strs(frame, n.tags.get("content"))] if "content" in n.tags else None
        out: list[str] = []
        for p in iter_parts(tree):
            if p.is_multipart or p.is_message:
                continue
            mt = p.mime_type
            if types is None:
                if p.type != "text":
                    continue
            elif not any(t == "" or t == mt or ("/" not in t and t == p.type) for t in types):
                continue
            data = decode_transfer_encoding(
                self.raw[p.body_start : min(p.body_end, p.body_start + cap)], p.cte
            )
            text = decode_bytes(data, p.charset) if p.type == "text" else data.decode("utf-8", "replace")
            if types is None and p.subtype == "html":
                text = _strip_html(text)
            out.append(text)
        return out

    def date_test(self, frame: _Frame, n: Node) -> bool:
        """RFC 5260 §4 date / §5 currentdate."""
        pos = n.positional
        zone_s = n.tag_string("zone")
        zone = _zone(self.expand(frame, zone_s)) if zone_s is not None else None
        if zone_s is not None and zone is None:
            return False
        if n.name == "currentdate":
            d = self.ctx.now
            part, keys = self.str1(frame, pos[0]).lower(), pos[1]
        else:
            header, part, keys = self.str1(frame, pos[0]), self.str1(frame, pos[1]).lower(), pos[2]
            vals = self.pick_index(n, self.header_values((header,)))
            if not vals:
                return False
            text = vals[0]
            if header.lower() == "received":
                text = text.rsplit(";", 1)[-1]
            try:
                parsed = email.utils.parsedate_to_datetime(text.strip())
            except (TypeError, ValueError, IndexError):
                return False
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            d = parsed if "originalzone" in n.tags else parsed.astimezone(self.ctx.now.tzinfo)
        if zone is not None:
            d = d.astimezone(zone)
        return self.match(frame, n, [date_part(d, part)], keys)

    async def duplicate(self, frame: _Frame, n: Node) -> bool:
        """RFC 7352 §3: the id is :uniqueid, or the :header field (default Message-ID)."""
        if "uniqueid" in n.tags:
            uid = self.str1(frame, n.tags["uniqueid"])
        else:
            vals = self.header_values((self.str1(frame, n.tags.get("header")) or "message-id",))
            if not vals:
                return False
            uid = vals[0]
        handle = self.str1(frame, n.tags.get("handle"))
        key = f"{handle}\0{uid}"
        seconds = n.tag_number("seconds")
        secs = DEFAULT_DUPLICATE_SECONDS if seconds is None else seconds
        self.dup_keys.append((key, secs))
        return bool(await self.wait(self.ctx.duplicate(key, secs, last="last" in n.tags)))


async def evaluate(
    script: Script,
    ctx: SieveContext,
    *,
    includes: Mapping[tuple[Location, str], Script] | None = None,
    limits: SieveLimits = SieveLimits(),
) -> SieveResult:
    """Run ``script``; never raises for script faults (they come back in ``SieveResult.error``)."""
    run = _Run(ctx, includes or {}, limits)
    try:
        await run.run_block(_Frame(script), script.commands)
    except (_Stop, _Return):
        pass
    except SieveRuntimeError as e:
        return SieveResult((), True, (), e)
    except RecursionError:
        return SieveResult((), True, (), SieveRuntimeError(0, 0, "script nested too deep"))
    return SieveResult(tuple(run.actions), run.implicit_keep, tuple(run.flags), None, tuple(run.dup_keys))
