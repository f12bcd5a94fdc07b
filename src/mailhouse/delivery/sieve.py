"""Sieve at local delivery (issue 17 §2): the account's active script — with the admin's
``[sieve] before`` and ``after`` scripts — decides, once per recipient, where a message goes.

What runs: ``before`` (when set), then the user's active script (store, ManageSieve), then
``after`` when the message is still kept. The language is the ``ScriptRunner``'s (the sieve
service); this module turns its actions into mail: folders with flags, discard, reject,
redirect through the outbound queue, vacation replies through the queue.

RFCs: 5228 §2.10.2 (implicit keep), §4.2 (redirect keeps the envelope sender), 5490 (fileinto
:create), 5232 (flags), 5429 (reject: a 550 before the 250 where the session can, else a
bounce), 5230 + 3834 (vacation: who never gets one, once per sender per :days, the reply's
fields), 7352 (duplicate, tracked in the store), 5435 + 5436 (notify by mailto: a notification
message through the queue).

Invariants
----------
* Mail is never lost: a script that cannot be read, compiled or run, or that asks for more than
  the limits allow (redirects per message and per day), files the message into INBOX (implicit
  keep) and the user gets ONE notice per script and error (``claim_once``) from the postmaster.
* A redirect is never sent when the message carries our loop marker for this recipient
  (``X-Loop``) or a ``Delivered-To`` of the target: it is kept instead (loop detection).
* A vacation reply is never sent to the null sender, lists (``List-Id`` …), bulk/junk/list
  precedence, auto-submitted mail, the user's own addresses, or a message not addressed to the
  user in To/Cc (RFC 5230 §4.5, RFC 3834 §2); at most once per (handle, sender) per ``:days``
  across every node (``Store.claim_once``); it goes out with a null envelope sender and
  ``Auto-Submitted: auto-replied`` (RFC 3834 §3.1.7, §5).
* A notification (RFC 5436) is never sent in answer to an auto-submitted message (§2.7); it goes
  out with a null envelope sender and ``Auto-Submitted: auto-notified`` (§2.7), From the user (or a
  :from that is one of the user's addresses), To/Cc/Bcc from the URI, and only the URI's safe header
  fields (§2.2: Subject, Keywords, Comments, In-Reply-To, References, body). Notifications count
  against the redirect limits: ``[sieve] max_redirects`` per message and ``redirects_per_day``.
* Filing plans are computed before anything is stored; side effects (queueing redirects and
  replies, notices) happen after the message was filed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.header
import email.utils
import hashlib
import logging
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mailhouse.config import SieveConfig
from mailhouse.delivery.srs import SrsCodec
from mailhouse.message import objectid
from mailhouse.message.headers import decode_header_value, get_header, get_headers
from mailhouse.queue.ids import new_queue_id
from mailhouse.reports.outbound import Enqueue
from mailhouse.sieve import (
    Action,
    FileInto,
    Keep,
    Location,
    Notify,
    Redirect,
    Reject,
    Script,
    SieveContext,
    SieveError,
    SieveLimits,
    SieveResult,
    Vacation,
    apply_header_edits,
    compile_script,
    evaluate,
)
from mailhouse.sieve.script import valid_redirect_address
from mailhouse.store.api import Account, NewMessage, Store

log = logging.getLogger(__name__)

DAY = 86400.0
#: RFC 5230 §4.1: the shortest period between two replies to one sender the server allows (1 day).
VACATION_MIN_SECONDS = DAY
#: How long one script error is remembered (one notice per script text and error per month).
NOTICE_TTL = 30 * DAY
#: Largest message the runner sees whole (the body test, RFC 5173); beyond it only the header.
MAX_BODY_FOR_SIEVE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RunResult:
    """What the scripts decided (the sieve service's actions, RESULT None when nothing ran), HEAD
    the header section after editheader, CRLF line ends, up to and with its empty line (None:
    unchanged), or ERROR (then: implicit keep)."""

    result: SieveResult | None = None
    head: bytes | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # "" for the null sender
    recipient: str  # the address the message was accepted for (before alias resolution)
    account: str  # the account's address
    auth: str = ""  # the submitter, when there is one
    spam_score: float | None = None  # RFC 5235 spamtest input (X-Spam-Score or the verdict)


@dataclass(frozen=True, slots=True)
class Scripts:
    """The script texts to run, in order, with the names their errors are reported under."""

    before: tuple[tuple[str, str], ...] = ()
    user: tuple[str, str] | None = None
    after: tuple[tuple[str, str], ...] = ()
    # RFC 6609 include: the user's scripts by name (:personal) and `[sieve] global_dir`'s (:global),
    # loaded only when a script mentions include
    personal: dict[str, str] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.before or self.user or self.after)


class ScriptRunner(Protocol):
    """The Sieve language as delivery uses it: run SCRIPTS on MESSAGE in CTX."""

    async def run(self, scripts: Scripts, message: bytes, ctx: SieveContext) -> RunResult: ...


def sieve_limits(cfg: SieveConfig) -> SieveLimits:
    """The language's limits from `[sieve]` (script size, redirects per message)."""
    return SieveLimits(max_script_size=cfg.max_script_size, max_redirects=cfg.max_redirects)


class SieveRunner:
    """Runs the scripts with the sieve service: compiled once per text (a bounded cache),
    ``[sieve] before``, the user's script, then ``after`` while the message is still kept; the
    implicit keep holds only if no script cancelled it (as Pigeonhole's sieve_before/after)."""

    CACHE = 256  # compiled scripts kept per process (keyed by their text)

    def __init__(self, limits: SieveLimits) -> None:
        self.limits = limits
        self._compiled: dict[tuple[str, str], Script] = {}

    def compile(self, name: str, text: str) -> Script:
        key = (name, text)
        got = self._compiled.get(key)
        if got is None:
            got = compile_script(text, name=name, limits=self.limits)
            if len(self._compiled) >= self.CACHE:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = got
        return got

    def _includes(self, script: Script, scripts: Scripts) -> dict[tuple[Location, str], Script]:
        """RFC 6609: every script SCRIPT includes, transitively (a missing one is left to :optional)."""
        out: dict[tuple[Location, str], Script] = {}
        todo = list(script.includes)
        while todo and len(out) < 64:
            loc, name = todo.pop()
            if (loc, name) in out:
                continue
            text = (scripts.personal if loc is Location.PERSONAL else scripts.globals).get(name)
            if text is not None:
                out[(loc, name)] = inc = self.compile(name, text)
                todo.extend(inc.includes)
        return out

    async def run(self, scripts: Scripts, message: bytes, ctx: SieveContext) -> RunResult:
        actions: list[Action] = []
        keep, flags = True, tuple[str, ...]()
        dups: list[tuple[str, int]] = []
        order = [*scripts.before, *([scripts.user] if scripts.user else [])]
        runs = [(n, t, False) for n, t in order] + [(n, t, True) for n, t in scripts.after]
        for name, text, is_after in runs:
            if is_after and not keep:
                break  # the admin's "after" script runs only on mail still kept
            try:
                script = self.compile(name, text)
            except SieveError as e:  # RFC 5228 §2.10.5: a script that does not compile is not run
                return RunResult(error=f"{name}: {e}")
            r = await _off_loop(script, ctx, self._includes(script, scripts), self.limits)
            if r.error is not None:
                return RunResult(error=f"{name}: {r.error}")
            actions += r.actions
            keep = keep and r.implicit_keep
            flags = r.implicit_keep_flags or flags
            dups += r.duplicate_keys
        result = SieveResult(tuple(actions), keep, tuple(flags), None, tuple(dups))
        edits = result.header_edits
        return RunResult(result, apply_header_edits(message[: head_end(message)], edits) if edits else None)


async def _off_loop(
    script: Script, ctx: SieveContext, includes: dict[tuple[Location, str], Script], limits: SieveLimits
) -> SieveResult:
    """Evaluate in a worker thread: body tests decode the message and regexes run up to the CPU
    budget, which must not hold the node's event loop (DESIGN.md: nothing heavy on the loop). The
    thread has its own loop; the context's store questions are answered on the node's loop."""
    bridged = _LoopContext(ctx, asyncio.get_running_loop())
    return await asyncio.to_thread(
        lambda: asyncio.run(evaluate(script, bridged, includes=includes, limits=limits))
    )


class _LoopContext:
    """SieveContext whose async questions run on LOOP (where the store lives), asked from another."""

    def __init__(self, inner: SieveContext, loop: asyncio.AbstractEventLoop) -> None:
        self._inner, self._loop = inner, loop
        self.message, self.envelope_from, self.envelope_to = (
            inner.message,
            inner.envelope_from,
            inner.envelope_to,
        )
        self.original_recipient, self.user_addresses = inner.original_recipient, inner.user_addresses
        self.spam_percent, self.virus_level = inner.spam_percent, inner.virus_level
        self.environment, self.now = inner.environment, inner.now

    async def _ask(self, coro: Coroutine[Any, Any, bool]) -> bool:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def mailbox_exists(self, name: str) -> bool:
        return await self._ask(self._inner.mailbox_exists(name))

    async def mailboxid_exists(self, mailboxid: str) -> bool:
        return await self._ask(self._inner.mailboxid_exists(mailboxid))

    async def duplicate(self, key: str, seconds: int, *, last: bool) -> bool:
        return await self._ask(self._inner.duplicate(key, seconds, last=last))


@dataclass(slots=True)
class DeliveryContext:
    """`sieve.SieveContext` over one delivery and the store (RFC 5490 mailboxexists, RFC 7352)."""

    message: bytes
    envelope_from: str
    envelope_to: str
    original_recipient: str
    user_addresses: Sequence[str]
    spam_percent: int | None
    environment: dict[str, str]
    now: dt.datetime
    store: Store
    account_id: int
    virus_level: int | None = None

    async def mailbox_exists(self, name: str) -> bool:
        return name.upper() == "INBOX" or await self.store.get_mailbox(self.account_id, name) is not None

    async def mailboxid_exists(self, mailboxid: str) -> bool:
        mbs = await self.store.list_mailboxes(self.account_id)  # RFC 9042 §3: MAILBOXID of message/objectid
        return any(objectid.mailboxid(mb.id, mb.uidvalidity) == mailboxid for mb in mbs)

    async def duplicate(self, key: str, seconds: int, *, last: bool) -> bool:
        # RFC 7352 §3: seen within SECONDS; recorded by the caller after a successful run
        mark = await self.store.get_mark(duplicate_key(self.account_id, key), time.time())
        return mark is not None


def duplicate_key(account_id: int, key: str) -> str:
    return f"duplicate:{account_id}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


# ---------------------------------------------------------------------- the plan per recipient
@dataclass(slots=True)
class Plan:
    """Where one recipient's copy goes and what follows the filing."""

    folders: dict[str, frozenset[str]] = field(default_factory=dict)  # mailbox → flags; {} = none
    create: set[str] = field(default_factory=set)  # mailboxes fileinto may create (:create)
    head: bytes | None = None  # the edited header section (editheader), None: as received
    reject: str = ""
    redirects: list[str] = field(default_factory=list)
    vacation: Vacation | None = None
    notifications: list[Notify] = field(default_factory=list)  # RFC 5435 notify actions
    error: str = ""
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # RFC 7352 keys to remember

    @property
    def discarded(self) -> bool:
        return not self.folders and not self.reject


def plan_of(run: RunResult) -> Plan:
    """Turn the scripts' actions into a plan (RFC 5228 §2.10.2: keep unless an action cancelled it)."""
    plan = Plan(head=run.head)
    r = run.result
    if run.error or r is None:
        plan.folders["INBOX"] = frozenset()
        plan.error = run.error
        return plan
    for a in r.actions:
        if isinstance(a, Keep):
            plan.folders["INBOX"] = plan.folders.get("INBOX", frozenset()) | set(a.flags)
        elif isinstance(a, FileInto):  # RFC 5228 §4.1: filing twice into one mailbox is one copy
            plan.folders[a.mailbox] = plan.folders.get(a.mailbox, frozenset()) | set(a.flags)
            if a.create:
                plan.create.add(a.mailbox)
        elif isinstance(a, Reject):  # RFC 5429 §2.1
            plan.reject = a.reason or "Message rejected by the recipient's filter"
        elif isinstance(a, Redirect):
            if a.address.lower() not in (x.lower() for x in plan.redirects):
                plan.redirects.append(a.address)
        elif isinstance(a, Vacation):
            if a.skip_reason is None:  # RFC 5230 §4.5, RFC 3834 §2 (decided by the language)
                plan.vacation = a
            else:
                log.debug("[sieve] no vacation reply: %s", a.skip_reason)
        elif isinstance(a, Notify):
            if a not in plan.notifications:  # the same notification twice is sent once
                plan.notifications.append(a)
    if r.implicit_keep and not plan.reject:
        plan.folders["INBOX"] = plan.folders.get("INBOX", frozenset()) | set(r.implicit_keep_flags)
    plan.duplicates = list(r.duplicate_keys)
    return plan


def head_end(message: bytes) -> int:
    """Where the header section ends (after its empty line; the whole message when it has none)."""
    i = message.find(b"\r\n\r\n")
    return len(message) if i < 0 else i + 4


def spam_score(message: bytes) -> float | None:
    """The spam score on the message (X-Spam-Score, written by spam/headers.py), for RFC 5235."""
    v = get_header(message[: head_end(message)], b"X-Spam-Score")
    if v is None:
        return None
    try:
        return float(v.strip().split()[0])
    except (ValueError, IndexError):
        return None


# ---------------------------------------------------------------------- RFC 3834 / 5230 rules
def vacation_reply(head: bytes, v: Vacation, recipient: str, sender: str, hostname: str, now: float) -> bytes:
    """The reply message (RFC 5230 §5, RFC 3834 §3)."""
    subject = v.subject
    if not subject:  # RFC 5230 §5.4: "Auto:" and the original subject
        orig = get_header(head, b"Subject")
        subject = "Auto: " + (decode_header_value(orig).strip() if orig else "")
    refs = []
    msgid = get_header(head, b"Message-ID")
    old_refs = get_header(head, b"References")
    if old_refs:
        refs.append(old_refs.decode("ascii", "replace").strip())
    if msgid:
        refs.append(msgid.decode("ascii", "replace").strip())
    domain = recipient.rpartition("@")[2] or hostname
    lines = [
        f"From: {v.from_ or recipient}",  # RFC 5230 §5.3
        f"To: {sender}",  # RFC 5230 §5.1
        f"Subject: {email.header.Header(subject, 'utf-8').encode() if not subject.isascii() else subject}",
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: {email.utils.make_msgid(domain=domain)}",
        "Auto-Submitted: auto-replied (vacation)",  # RFC 3834 §5, RFC 5230 §5.5
        "Precedence: bulk",
        "MIME-Version: 1.0",
    ]
    if msgid:
        lines.append(f"In-Reply-To: {msgid.decode('ascii', 'replace').strip()}")  # RFC 5230 §5.8
    if refs:
        lines.append(f"References: {' '.join(refs)}")
    if not v.mime:  # RFC 5230 §4.7 :mime: the reason is a MIME entity with its own header fields
        lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", ""]
    return _with_body(lines, v.reason)


def _with_body(lines: list[str], body: str) -> bytes:
    """The header LINES (ending with the empty one) and BODY as a message with CRLF line ends."""
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return ("\r\n".join(lines) + "\r\n" + body + ("" if body.endswith("\r\n") else "\r\n")).encode("utf-8")


#: RFC 5436 §2.2: the URI header fields a notification takes; every other one (From, Sender,
#: Auto-Submitted, Received, Date, Message-ID, Reply-To …) is unsafe and ignored.
SAFE_URI_HEADERS = ("subject", "keywords", "comments", "in-reply-to", "references")
#: RFC 5436 §2.5: :importance as the de-facto priority fields ("1" high, "2" normal, "3" low).
IMPORTANCE = {"1": ("1 (Highest)", "high"), "2": ("3 (Normal)", "normal"), "3": ("5 (Lowest)", "low")}


@dataclass(frozen=True, slots=True)
class MailtoUri:
    """A mailto URI (RFC 6068) as a notification uses it: recipients, the To/Cc fields, the safe
    header fields and the body."""

    recipients: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body: str | None


def _one_line(v: str) -> str:
    return " ".join(v.split())  # no CR/LF reaches a header field (header injection)


def parse_mailto(uri: str) -> MailtoUri:
    """RFC 6068 §2: ``mailto:to1,to2?hfname=hfvalue&…``, percent-decoded; to/cc/bcc are recipients."""
    rest = uri[len("mailto:") :]
    path, _, query = rest.partition("?")

    def addrs(v: str) -> list[str]:
        return [a.strip() for a in v.split(",") if valid_redirect_address(a.strip())]

    fields: dict[str, list[str]] = {"to": addrs(urllib.parse.unquote(path)), "cc": [], "bcc": []}
    headers: list[tuple[str, str]] = []
    body: str | None = None
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        key = name.lower()
        if key in fields:
            fields[key] += addrs(value)
        elif key == "body":  # RFC 6068 §2: the first text/plain body part
            body = value
        elif key in SAFE_URI_HEADERS:  # RFC 5436 §2.2: safe fields only
            headers.append((name, _one_line(value)))
    seen: dict[str, str] = {}
    for a in (*fields["to"], *fields["cc"], *fields["bcc"]):
        seen.setdefault(a.lower(), a.removeprefix("<").removesuffix(">"))
    return MailtoUri(tuple(seen.values()), tuple(fields["to"]), tuple(fields["cc"]), tuple(headers), body)


def _encoded(v: str) -> str:
    return v if v.isascii() else email.header.Header(v, "utf-8").encode()


def notification(
    head: bytes, n: Notify, uri: MailtoUri, user: Sequence[str], hostname: str, now: float
) -> bytes:
    """The notification message (RFC 5436 §2.7) about the triggering message with header HEAD."""
    orig_from = decode_header_value(get_header(head, b"From") or b"").strip()
    orig_subject = decode_header_value(get_header(head, b"Subject") or b"").strip()
    uri_subject = next((v for k, v in uri.headers if k.lower() == "subject"), None)
    # RFC 5436 §2.7: Subject from :message, else the URI's subject, else a summary (RFC 5435 §3.6)
    subject = _one_line(n.message or uri_subject or f"{orig_from} [{orig_subject}]")
    sender = user[0]
    if n.from_:  # RFC 5436 §2.3: :from when it is an address, and (our check) one of the user's
        _name, addr = email.utils.parseaddr(n.from_)
        if addr.lower() in (u.lower() for u in user):
            sender = _one_line(n.from_)
    prio, importance = IMPORTANCE.get(n.importance, IMPORTANCE["2"])
    domain = user[0].rpartition("@")[2] or hostname
    lines = [
        f"From: {sender}",
        *([f"To: {', '.join(uri.to)}"] if uri.to else []),
        *([f"Cc: {', '.join(uri.cc)}"] if uri.cc else []),  # Bcc recipients get it, unnamed
        f"Subject: {_encoded(subject)}",
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: {email.utils.make_msgid(domain=domain)}",
        "Auto-Submitted: auto-notified",  # RFC 5436 §2.7, RFC 3834 §5
        f"X-Priority: {prio}",  # RFC 5436 §2.5
        f"Importance: {importance}",
        *(f"{k.title()}: {_encoded(v)}" for k, v in uri.headers if k.lower() != "subject"),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    # RFC 5436 §2.7: the URI's body, else a summary of the triggering message
    body = uri.body if uri.body is not None else f"New mail from {orig_from}\nSubject: {orig_subject}\n"
    return _with_body(lines, body)


def is_auto_submitted(head: bytes) -> bool:
    """RFC 3834 §5: Auto-Submitted with any value but "no"."""
    v = get_header(head, b"Auto-Submitted")
    return v is not None and v.split(b";")[0].strip().lower() != b"no"


def is_loop(head: bytes, recipient: str, target: str) -> bool:
    """The message was redirected by this recipient before, or already went to TARGET."""
    marks = {v.strip().lower() for v in get_headers(head, b"X-Loop")}
    delivered = {v.strip().lower() for v in get_headers(head, b"Delivered-To")}
    return recipient.lower().encode() in marks or target.lower().encode() in delivered


def notice_message(account: str, hostname: str, script: str, error: str, now: float) -> bytes:
    """The short note a user gets when their filter failed (once per script and error)."""
    text = (
        f"Your mail filter ({script}) could not run on a message delivered to you:\r\n\r\n"
        f"    {error}\r\n\r\n"
        "The message was put into your INBOX, as every message will be until the filter is fixed.\r\n"
        "You can check and correct the filter in your mail client's Sieve editor (ManageSieve).\r\n"
    )
    return (
        f"From: Mail Delivery <postmaster@{hostname}>\r\nTo: {account}\r\n"
        f"Subject: Your mail filter failed\r\nDate: {email.utils.formatdate(now)}\r\n"
        f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\nAuto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text
    ).encode("utf-8")


# ---------------------------------------------------------------------- the service
class SieveFilter:
    """Runs the scripts for one recipient (``plan``) and carries out what follows the filing
    (``after_filing``). Built once per node; the outbox is the node's queue runner (``outbox`` is
    set once it exists, since the queue runner itself is built on the local delivery)."""

    def __init__(
        self,
        store: Store,
        cfg: SieveConfig,
        runner: ScriptRunner,
        hostname: str,
        clock: Callable[[], float] = time.time,
        srs: SrsCodec | None = None,
    ) -> None:
        self.srs = srs
        self.store = store
        self.cfg = cfg
        self.runner = runner
        self.hostname = hostname
        self.clock = clock
        self.outbox: Enqueue | None = None  # the queue runner's enqueue

    @staticmethod
    def _read(p: Path | None) -> tuple[tuple[str, str], ...]:
        if p is None:
            return ()
        try:
            return ((p.name, p.read_text("utf-8")),)
        except (OSError, UnicodeDecodeError) as e:  # the admin's script: logged, mail goes on
            log.error("[sieve] cannot read %s: %s", p, e)
            return ()

    async def scripts(self, account: Account) -> Scripts:
        active = await self.store.active_sieve_script(account.id)
        before, after = self._read(self.cfg.before), self._read(self.cfg.after)
        texts = [t for _n, t in (*before, *after)] + ([active[1]] if active else [])
        if not any("include" in t for t in texts):
            return Scripts(before, active, after)
        personal = {
            sc.name: await self.store.get_sieve_script(account.id, sc.name)
            for sc in await self.store.sieve_scripts(account.id)
        }
        return Scripts(before, active, after, personal, self._globals())

    def _globals(self) -> dict[str, str]:
        """`[sieve] global_dir`: NAME.sieve → NAME (RFC 6609 §3.2 :global; names are file names only)."""
        d = self.cfg.global_dir
        if d is None:
            return {}
        out: dict[str, str] = {}
        for p in sorted(d.glob("*.sieve")):
            for name, text in self._read(p):
                out[name.removesuffix(".sieve")] = text
        return out

    async def plan(self, account: Account, scripts: Scripts, message: bytes, envelope: Envelope) -> Plan:
        """Run SCRIPTS (``scripts(account)``, not empty) on MESSAGE for one recipient."""
        now = self.clock()
        score = envelope.spam_score
        ctx = DeliveryContext(
            message=message,
            envelope_from=envelope.sender,
            envelope_to=envelope.recipient,
            original_recipient=envelope.recipient,
            user_addresses=(envelope.recipient, account.address),
            # RFC 5235 §3.2 spamtestplus: a SpamAssassin-style score, 5 = the usual threshold → 50 %
            spam_percent=None if score is None else max(0, min(100, round(score * 10))),
            environment={
                "domain": self.hostname.partition(".")[2] or self.hostname,  # RFC 5183 §4
                "host": self.hostname,
                "location": "MDA",
                "phase": "during",
            },
            now=dt.datetime.fromtimestamp(now, dt.UTC).astimezone(),
            store=self.store,
            account_id=account.id,
        )
        try:
            result = await self.runner.run(scripts, message, ctx)
        except Exception as e:  # a bug in the language must not lose mail either
            log.exception("[sieve] script run failed for %s", account.address)
            result = RunResult(error=f"internal error: {type(e).__name__}")
        plan = plan_of(result)
        if plan.error:
            await self._notify_error(account, scripts, plan.error)
        for key, seconds in plan.duplicates:  # RFC 7352 §3.1: recorded after a successful run
            await self.store.set_mark(duplicate_key(account.id, key), "1", now + seconds)
        return plan

    async def _notify_error(self, account: Account, scripts: Scripts, error: str) -> None:
        name = scripts.user[0] if scripts.user else "global"
        text = scripts.user[1] if scripts.user else ""
        now = self.clock()
        digest = hashlib.sha256((text + "\0" + error).encode()).hexdigest()[:32]
        key = f"sieve-notice:{account.id}:{digest}"
        if not await self.store.claim_once(key, now, now + NOTICE_TTL):
            return
        log.info("[sieve] %s: script %s failed: %s", account.address, name, error)
        inbox = await self.store.get_mailbox(account.id, "INBOX") or await self.store.create_mailbox(
            account.id, "INBOX"
        )
        data = notice_message(account.address, self.hostname, name, error, now)
        await self.store.deliver(data, [NewMessage(inbox.id, "", len(data), internaldate=now)])

    async def after_filing(
        self, account: Account, plan: Plan, message: bytes, envelope: Envelope, queue_id: str
    ) -> None:
        """Queue the redirects and the vacation reply of PLAN (after the message was filed)."""
        head = message[: head_end(message)]
        if plan.redirects:
            await self._redirect(account, plan, message, envelope, queue_id)
        if plan.vacation is not None:
            await self._vacation(account, plan.vacation, head, envelope)
        if plan.notifications:
            await self._notify(account, plan.notifications, head, envelope, queue_id)

    async def _redirect(
        self, account: Account, plan: Plan, message: bytes, env: Envelope, queue_id: str
    ) -> None:
        if self.outbox is None:
            return
        head = message[: head_end(message)]
        now = self.clock()
        for target in plan.redirects:
            if is_loop(head, env.recipient, target):
                log.info("[sieve] %s: redirect to %s is a loop; not sent", account.address, target)
                continue
            once = hashlib.sha256(f"{queue_id}\0{target.lower()}".encode()).hexdigest()[:40]
            if not await self.store.claim_once(f"sieve-redirected:{account.id}:{once}", now, now + 7 * DAY):
                continue  # the same delivery run again (queue retry after a crash): sent already
            n = await self.store.count_event(f"sieve-redirect:{account.id}", now, DAY)
            if n > self.cfg.redirects_per_day:
                log.warning(
                    "[sieve] %s: over %d redirects today; not sent",
                    account.address,
                    self.cfg.redirects_per_day,
                )
                continue
            # our marker and the hop's Delivered-To on top: the next pass through us sees the loop
            marked = f"X-Loop: {env.recipient}\r\nDelivered-To: {env.recipient}\r\n".encode() + message
            qid = new_queue_id()
            # RFC 5228 §4.2: the envelope sender stays the original one (SRS-rewritten when enabled,
            # so SPF passes at the next hop: delivery/srs.py)
            sender = self.srs.forward(env.sender) if self.srs is not None and env.sender else env.sender
            await self.outbox(qid, sender, [(target, {})], marked, {})
            log.info("[sieve] %s: redirected to %s as %s", account.address, target, qid)

    async def _vacation(self, account: Account, v: Vacation, head: bytes, env: Envelope) -> None:
        if self.outbox is None:
            return
        now = self.clock()
        handle = v.handle or hashlib.sha256(((v.subject or "") + "\0" + v.reason).encode()).hexdigest()[:32]
        who = hashlib.sha256((handle + "\0" + env.sender.lower()).encode()).hexdigest()[:40]
        key = f"vacation:{account.id}:{who}"
        # RFC 5230 §4.1: once per sender per :days (never below a day), shared by every node
        if not await self.store.claim_once(key, now, now + max(v.seconds, VACATION_MIN_SECONDS)):
            return
        reply = vacation_reply(head, v, env.recipient, env.sender, self.hostname, now)
        await self.outbox(new_queue_id(), "", [(env.sender, {})], reply, {})  # RFC 3834 §3.3: null sender
        log.info("[sieve] %s: vacation reply to %s queued", account.address, env.sender)

    async def _notify(
        self, account: Account, notes: Sequence[Notify], head: bytes, env: Envelope, queue_id: str
    ) -> None:
        if self.outbox is None:
            return
        if is_auto_submitted(head):  # RFC 5436 §2.7: never in answer to an auto-submitted message
            log.info("[sieve] %s: no notification about an auto-submitted message", account.address)
            return
        now = self.clock()
        user = (env.recipient, account.address)
        for i, n in enumerate(notes):
            if i >= self.cfg.max_redirects:  # the redirect limit per message holds for notifications too
                log.warning("[sieve] %s: over %d notifications; not sent", account.address, i)
                break
            uri = parse_mailto(n.method)
            if not uri.recipients:
                continue
            once = hashlib.sha256(f"{queue_id}\0{n.method}".encode()).hexdigest()[:40]
            if not await self.store.claim_once(f"sieve-notified:{account.id}:{once}", now, now + 7 * DAY):
                continue  # the same delivery run again: sent already
            # counted with the redirects: a notify rule is no bulk sender either
            if (
                await self.store.count_event(f"sieve-redirect:{account.id}", now, DAY)
                > self.cfg.redirects_per_day
            ):
                log.warning(
                    "[sieve] %s: over %d redirects today; notification not sent",
                    account.address,
                    self.cfg.redirects_per_day,
                )
                continue
            data = notification(head, n, uri, user, self.hostname, now)
            qid = new_queue_id()
            await self.outbox(
                qid, "", [(r, {}) for r in uri.recipients], data, {}
            )  # RFC 5436 §2.7: null sender
            log.info(
                "[sieve] %s: notification to %s queued as %s", account.address, ", ".join(uri.recipients), qid
            )
