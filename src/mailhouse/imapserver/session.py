"""One IMAP connection: state machine, dispatch, authentication and session-level commands.

RFCs: RFC 9051 (IMAP4rev2) §3 (states), §6.1 (any state: CAPABILITY NOOP LOGOUT), §6.2
(STARTTLS, AUTHENTICATE, LOGIN), §6.3.1 (ENABLE), §6.3.2-3 (SELECT/EXAMINE), §6.3.10
(NAMESPACE), §6.3.13 (IDLE), §6.4.1-2 (CLOSE, UNSELECT), §7.1 response codes; RFC 3501
(IMAP4rev1: CHECK, \\Recent); RFC 2177 IDLE; RFC 2971 ID; RFC 4959 SASL-IR; RFC 5161 ENABLE;
RFC 5465 NOTIFY; RFC 5530 response codes; RFC 6855 UTF8=ACCEPT; RFC 7162 CONDSTORE/QRESYNC
(SELECT parameters, HIGHESTMODSEQ, VANISHED (EARLIER)); RFC 4978 COMPRESS; RFC 8314.

Structure (DESIGN.md "Servers"): one explicit dispatch table :data:`COMMANDS` (command name →
handler) and one state gate :data:`ALLOWED`; handlers live in the module of their concern
(``mailboxes``, ``fetch``, ``store_cmd``, ``append``, ``extensions``) and raise the typed
errors of ``errors``; :meth:`IMAPSession._run_command` catches them once per command.

Invariants:

* A handler never writes to the socket directly: it queues with :meth:`IMAPSession.send` and
  the dispatcher flushes once per command (large FETCHes flush as they go).
* Mailbox updates of other sessions are only sent where RFC 9051 §7 allows: after every
  command in selected state (EXPUNGE/VANISHED not after FETCH/STORE/SEARCH/SORT/THREAD),
  during IDLE, and — with NOTIFY — while no command is in progress.
* LOGIN/AUTHENTICATE are refused on a plaintext connection unless ``[auth] allow_plaintext``
  (LOGINDISABLED advertised, RFC 9051 §6.2.3 / §7.2.2); failures wait the shared per-IP delay
  of ``accounts.throttle``.
* Credentials, SASL responses and message contents never reach the log.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailhouse.accounts import sasl_flow
from mailhouse.log import ConnLogger, safe
from mailhouse.proto import sasl
from mailhouse.proto.imap import (
    NEED_DATA,
    AuthContinuation,
    Command,
    CommandError,
    ContinuationNeeded,
    IdleDone,
    IMAPServerProtocol,
    LiteralTooBig,
    response,
)
from mailhouse.proto.imap.commands import (
    Authenticate,
    Compress,
    Enable,
    Id,
    Login,
    Select,
)
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import Account, AlreadyExists, Conflict, NotFound, StoreError

from . import append as append_mod
from . import extensions, fetch, mailboxes, notify, store_cmd
from .changes import ChangeHub, Listener
from .errors import Bad, ImapError, No
from .selected import RecentClaims, SelectedMailbox

if TYPE_CHECKING:
    from mailhouse.services import Services

    from .conn import Conn

log = logging.getLogger(__name__)

IMPLEMENTATION = "Mailhouse"
TLS_HANDSHAKE_TIMEOUT = 30.0
DRAIN_POLL = 0.5  # seconds between drain checks while waiting for input
FLUSH_AT = 256 * 1024  # a handler's queued output is written once it exceeds this


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class Ok:
    """What a handler returns for its tagged OK (None means ``OK <NAME> completed``)."""

    text: str
    code: str | None = None


Handler = Callable[["IMAPSession", Command], Awaitable["Ok | None"]]

# RFC 9051 §6.4.4 note / RFC 3501 §7.4.1: no EXPUNGE while responding to these (UID forms may).
NO_EXPUNGE_DURING = frozenset(("FETCH", "STORE", "SEARCH", "SORT", "THREAD"))

class IMAPSession:
    def __init__(self, svc: Services, hub: ChangeHub, claims: RecentClaims, conn: Conn, name: str) -> None:
        self.svc = svc
        self.cfg = svc.cfg
        self.store = svc.store
        self.hub = hub
        self.claims = claims
        self.conn = conn
        self.listener_name = name  # "imap" | "imaps"
        self.tls = conn.is_tls()
        self.ip = conn.peer_ip()
        self.cid = secrets.token_hex(4)
        self.log = ConnLogger(log, {"cid": self.cid})
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.enabled: set[str] = set()
        self.selected: SelectedMailbox | None = None
        self.notify: notify.NotifyState | None = None
        self._notify_listener: Listener | None = None
        self._out: list[bytes] = []
        self._out_len = 0
        self._read_task: asyncio.Task[bytes] | None = None
        self.closing = False
        self.core = IMAPServerProtocol(max_append_literal=self.cfg.max_message_size)
        self.current: Command | None = None

    # ---------------------------------------------------------------- modes
    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or self.rev2

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    def login_allowed(self) -> bool:
        return self.tls or self.cfg.allow_plaintext_auth

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self.state is State.NOT_AUTHENTICATED:
            if not self.tls:
                caps.append("STARTTLS")  # RFC 9051 §6.2.1
            if self.login_allowed():
                caps += [f"AUTH={m}" for m in sasl_flow.MECHANISMS]
            else:
                caps.append("LOGINDISABLED")  # RFC 9051 §7.2.2
            return caps
        caps += [
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "UIDPLUS",
            "MOVE",
            "CONDSTORE",
            "QRESYNC",
            "BINARY",
            "MULTIAPPEND",
            f"APPENDLIMIT={self.cfg.max_message_size}",
            "STATUS=SIZE",
            "UTF8=ACCEPT",
            "NOTIFY",
            "WITHIN",  # RFC 5032: OLDER/YOUNGER (query.py)
            "SAVEDATE",  # RFC 8514: FETCH SAVEDATE, SAVEDBEFORE/SAVEDON/SAVEDSINCE, SAVEDATESUPPORTED
        ]
        caps += extensions.capabilities(self)
        if not self.conn.compressed:
            caps.append("COMPRESS=DEFLATE")
        return caps

    # ---------------------------------------------------------------- output
    def send(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._out_len += len(data)

    def tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        self.send(response.tagged(tag, status, text, code))

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._out_len = 0
            await self.conn.write(data)

    async def maybe_flush(self) -> None:
        if self._out_len >= FLUSH_AT:
            await self.flush()

    # ---------------------------------------------------------------- input
    async def wait_input(self, wake: asyncio.Event | None = None) -> bytes | None:
        """Next client bytes; ``b""`` on EOF, idle timeout or drain; None when ``wake`` fired."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.imap_idle_timeout
        while True:
            if self.svc.draining:
                self.send(response.untagged_status("BYE", "Server shutting down"))  # RFC 9051 §7.1.5
                await self.flush()
                self.closing = True
                return b""
            left = deadline - loop.time()
            if left <= 0:
                # RFC 9051 §5.4: autologout timer (≥ 30 minutes by default)
                self.send(response.untagged_status("BYE", "Autologout; idle for too long"))
                await self.flush()
                self.closing = True
                return b""
            if self._read_task is None:
                self._read_task = asyncio.ensure_future(self.conn.read())
            waits: set[asyncio.Future[Any]] = {self._read_task}
            waker = None
            if wake is not None:
                if wake.is_set():
                    return None
                waker = asyncio.ensure_future(wake.wait())
                waits.add(waker)
            done, _ = await asyncio.wait(waits, timeout=min(left, DRAIN_POLL))
            if waker is not None and not waker.done():
                waker.cancel()
            if self._read_task in done:
                task, self._read_task = self._read_task, None
                return task.result()
            if waker is not None and waker in done:
                return None

    def cancel_read(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()
            self._read_task = None

    # ---------------------------------------------------------------- main loop
    async def run(self) -> None:
        self.log.info("connect from %s mode=%s", self.ip, self.listener_name)
        try:
            # RFC 9051 §7.1.1: greeting with the capabilities (saves a round trip)
            self.send(response.untagged_status("OK", f"{IMPLEMENTATION} IMAP4rev2 ready", self._cap_code()))
            await self.flush()
            await self._loop()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError) as e:
            self.log.info("connection lost: %s", type(e).__name__)
        finally:
            self.cancel_read()
            self._stop_notify()
            await self.conn.close()
            self.log.info("disconnect from %s", self.ip)

    def _cap_code(self) -> str:
        return "CAPABILITY " + " ".join(self.capabilities())

    async def _loop(self) -> None:
        while not self.closing:
            ev = self.core.next_event()
            if ev is NEED_DATA:
                await self.flush()
                data = await self._idle_wait()
                if data is None:
                    continue
                if not data:
                    return
                self.core.receive_data(data)
                continue
            if isinstance(ev, ContinuationNeeded):
                self.send(ev.data)
            elif isinstance(ev, LiteralTooBig):
                self.send(ev.reply_bytes)
                if not ev.synchronizing:
                    # RFC 7888 §4: we may close instead of reading up to 4 GiB of garbage
                    self.log.info("non-synchronising literal of %d octets refused; closing", ev.size)
                    self.send(response.untagged_status("BYE", "Literal too big"))
                    await self.flush()
                    return
            elif isinstance(ev, CommandError):
                self.send(self._rewrite_error(ev.reply_bytes))
            elif isinstance(ev, Command):
                await self._run_command(ev)
            elif isinstance(ev, AuthContinuation | IdleDone):
                self.send(response.untagged_status("BAD", "Unexpected continuation"))
            await self.flush()

    @staticmethod
    def _rewrite_error(reply: bytes) -> bytes:
        # The core answers a mailbox name that is not valid modified UTF-7 with BAD; the issue
        # wants the mailbox-name refusal to be NO [CANNOT] (RFC 5530 §3) like our other checks.
        if b" BAD Invalid modified UTF-7 mailbox name" in reply:
            tag = reply.split(b" ", 1)[0]
            return tag + b" NO [CANNOT] Invalid mailbox name (modified UTF-7)\r\n"
        return reply

    async def _idle_wait(self) -> bytes | None:
        """Wait for input; with NOTIFY active, deliver notifications while no command runs."""
        lst = self._notify_listener
        data = await self.wait_input(lst.event if lst is not None else None)
        if data is None and lst is not None:
            await self._deliver_notifications(lst, in_command=False)
            await self.flush()
        return data

    async def _run_command(self, cmd: Command) -> None:
        name = cmd.name
        base = name.removeprefix("UID ")
        if name not in ALLOWED[self.state]:
            if name in COMMANDS:
                self.tagged(cmd.tag, "BAD", f"{name} not allowed in {self.state.value} state")
            else:
                self.tagged(cmd.tag, "BAD", f"{name[:40]} not supported")
            return
        handler = COMMANDS[name]
        self.current = cmd
        result: Ok | None = None
        status, text = "OK", f"{base} completed"
        code: str | None = None
        try:
            result = await handler(self, cmd)
        except _AlreadyAnswered:
            self.current = None
            return
        except ImapError as e:
            status, text, code = e.status, e.text, e.code
        except NotFound as e:
            status, text, code = "NO", str(e) or "No such mailbox", "NONEXISTENT"
        except AlreadyExists as e:
            status, text, code = "NO", str(e) or "Already exists", "ALREADYEXISTS"
        except Conflict:
            status, text, code = "NO", "Conflicting change, try again", "UNAVAILABLE"
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            raise
        except StoreError as e:
            self.log.warning("store error in %s: %s", name, type(e).__name__)
            status, text, code = "NO", "Temporary failure, try again later", "UNAVAILABLE"
        except Exception:
            self.log.exception("internal error handling %s", name)
            status, text, code = "NO", "Internal server error", "SERVERBUG"  # RFC 5530 §3
        finally:
            self.current = None
        if result is not None and status == "OK":
            text, code = result.text, result.code
        if self.closing and self.state is State.LOGOUT:
            self.tagged(cmd.tag, status, text, code)
            return
        if status != "BAD" and self.selected is not None and name not in ("SELECT", "EXAMINE"):
            await self.sync(allow_expunge=name not in NO_EXPUNGE_DURING)
        self.tagged(cmd.tag, status, text, code)

    async def sync(self, *, allow_expunge: bool) -> None:
        """Re-read the selected mailbox and queue what may be reported now."""
        view = self.selected
        if view is None:
            return
        try:
            await view.refresh()
        except StoreError:
            return
        if view.deleted:
            # The mailbox vanished under us (another session deleted or recreated it).
            self.send(response.untagged_status("BYE", "Selected mailbox was deleted"))
            self.closing = True
            return
        # EXPUNGE/EXISTS/FETCH, RFC 5267 ADDTO/REMOVEFROM, RFC 5465 MessageNew FETCH
        await notify.report(self, view, allow_expunge=allow_expunge)

    # ---------------------------------------------------------------- any state
    async def cmd_capability(self, cmd: Command) -> Ok | None:
        self.send(response.capability(self.capabilities()))
        return None

    async def cmd_noop(self, cmd: Command) -> Ok | None:
        return None  # updates are sent by the dispatcher (RFC 9051 §6.1.2)

    async def cmd_logout(self, cmd: Command) -> Ok | None:
        self.send(response.untagged_status("BYE", f"{IMPLEMENTATION} logging out"))
        self.state = State.LOGOUT
        self.closing = True
        return Ok("LOGOUT completed")

    async def cmd_id(self, cmd: Command) -> Ok | None:
        args = cmd.args
        assert isinstance(args, Id)
        if args.params:  # RFC 2971 §3.1: log the client's identity (printable, bounded)
            self.log.info("client id: %s", safe(" ".join(f"{k!r}={v!r}" for k, v in args.params[:10]), 300))
        self.send(response.untagged("ID", ["name", IMPLEMENTATION, "vendor", IMPLEMENTATION]))
        return None

    # ---------------------------------------------------------------- not authenticated
    async def cmd_starttls(self, cmd: Command) -> Ok | None:
        if self.tls:
            raise Bad("TLS already active")
        await self.flush()
        reply = response.tagged(cmd.tag, "OK", "Begin TLS negotiation now")
        dropped_core = len(self.core.take_buffered())
        try:
            dropped = await self.conn.start_tls(reply, self.svc.tls, TLS_HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as e:
            self.log.info("TLS handshake failed: %s", type(e).__name__)
            self.closing = True
            raise ConnectionError("TLS handshake failed") from e
        # RFC 9051 §6.2.1 / CVE-2011-0411: plaintext pipelined after STARTTLS is never executed
        dropped += dropped_core + len(self.core.take_buffered())
        if dropped:
            self.log.info("discarded %d octets of plaintext pipelined after STARTTLS", dropped)
        self.tls = True
        raise _AlreadyAnswered()

    async def cmd_login(self, cmd: Command) -> Ok | None:
        args = cmd.args
        assert isinstance(args, Login)
        if not self.login_allowed():
            # RFC 9051 §6.2.3 (LOGINDISABLED) / §7.1 PRIVACYREQUIRED
            raise No("Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED")
        user = args.userid.decode("utf-8", "replace")
        account = await self.svc.auth.check(user, args.password.decode("utf-8", "replace"), self.ip)
        if account is None:
            self.log.info("login failed (LOGIN) user=%s", safe(user, 100))
            raise No("Authentication failed", "AUTHENTICATIONFAILED")  # RFC 5530 §3
        return self._logged_in(account, "LOGIN")

    async def cmd_authenticate(self, cmd: Command) -> Ok | None:
        args = cmd.args
        assert isinstance(args, Authenticate)
        if not self.login_allowed():
            raise No("Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED")
        mech = args.mechanism.upper()
        if mech not in sasl_flow.MECHANISMS:
            raise No("Unsupported authentication mechanism", "CANNOT")

        async def send_challenge(b64: bytes) -> None:
            self.send(response.continuation_data(b64))  # RFC 9051 §6.2.2: "+ base64"
            await self.flush()
            self.core.begin_auth_continuation(cmd.tag)

        try:
            account = await sasl_flow.authenticate(
                self.svc.auth, mech, args.initial_response, send_challenge, self._auth_line, self.ip
            )
        except sasl.SaslCancelled:
            raise Bad("Authentication cancelled") from None  # RFC 9051 §6.2.2
        except sasl.SaslError:
            raise Bad("Invalid SASL response") from None
        except LookupError:
            raise No("Unsupported authentication mechanism", "CANNOT") from None
        if account is None:
            self.log.info("login failed (AUTHENTICATE %s)", mech)
            raise No("Authentication failed", "AUTHENTICATIONFAILED")
        return self._logged_in(account, f"AUTHENTICATE {mech}")

    async def _auth_line(self) -> bytes:
        while True:
            ev = self.core.next_event()
            if isinstance(ev, AuthContinuation):
                return ev.line
            if isinstance(ev, CommandError):
                raise sasl.SaslError("bad continuation line")
            if ev is NEED_DATA:
                data = await self.wait_input()
                if not data:
                    raise ConnectionError("closed during AUTHENTICATE")
                self.core.receive_data(data)
                continue
            raise sasl.SaslError("unexpected event during AUTHENTICATE")

    def _logged_in(self, account: Account, how: str) -> Ok:
        self.account = account
        self.state = State.AUTHENTICATED
        self.log.info("authenticated as %s via %s", account.address, how)
        return Ok("Logged in", self._cap_code())  # RFC 9051 §6.2.3: CAPABILITY in the OK

    # ---------------------------------------------------------------- authenticated
    def acc(self) -> Account:
        assert self.account is not None
        return self.account

    async def cmd_enable(self, cmd: Command) -> Ok | None:
        args = cmd.args
        assert isinstance(args, Enable)
        known = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"} | extensions.enableable(self)
        new: list[str] = []
        for cap in args.capabilities:
            want = [cap]
            if cap == "QRESYNC":  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
                want = ["CONDSTORE", "QRESYNC"]
            for c in want:
                if c in known and c not in self.enabled:
                    self.enabled.add(c)
                    new.append("IMAP4rev2" if c == "IMAP4REV2" else c)
        self.core.utf8_enabled = self.utf8
        if self.selected is not None:
            self.selected.condstore = self.selected.condstore or self.condstore
            self.selected.qresync = self.qresync
        self.send(response.enabled(new))  # RFC 5161 §3.2: only what this command enabled
        return None

    async def cmd_namespace(self, cmd: Command) -> Ok | None:
        # RFC 2342 §5: one personal namespace, prefix "" and delimiter "/"; no shared/other
        self.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        return None

    async def cmd_compress(self, cmd: Command) -> Ok | None:
        args = cmd.args
        assert isinstance(args, Compress)
        if self.conn.compressed:
            raise No("Compression already active", "COMPRESSIONACTIVE")  # RFC 4978 §3
        if args.mechanism != "DEFLATE":
            raise Bad("Unsupported compression mechanism")
        self.tagged(cmd.tag, "OK", "DEFLATE active")
        await self.flush()
        # RFC 4978 §3: compression starts right after the OK, both ways; bytes the client
        # already sent after the command are compressed data.
        self.conn.start_compress(self.core.take_buffered())
        raise _AlreadyAnswered()

    async def cmd_idle(self, cmd: Command) -> Ok | None:
        self.send(response.continuation("idling"))  # RFC 2177 §3
        await self.flush()
        self.core.begin_idle(cmd.tag)
        lst = self.hub.listen(self.acc().id)
        try:
            if self.selected is not None:
                await self.sync(allow_expunge=True)
                await self.flush()
            while not self.closing:
                ev = self.core.next_event()
                if isinstance(ev, IdleDone):
                    return Ok("IDLE terminated")
                if isinstance(ev, CommandError):
                    self.send(ev.reply_bytes)  # tagged BAD "Expected DONE": IDLE is over
                    raise _AlreadyAnswered()
                if ev is not NEED_DATA:
                    raise Bad("Unexpected data during IDLE")
                data = await self.wait_input(lst.event)
                if data is None:
                    lst.drain()
                    if self.notify is not None:
                        await self._deliver_notifications(self._notify_listener or lst, in_command=True)
                    elif self.selected is not None:
                        await self.sync(allow_expunge=True)  # IDLE is a command in progress
                    await self.flush()
                    continue
                if not data:
                    raise ConnectionError("closed during IDLE")
                self.core.receive_data(data)
            raise _AlreadyAnswered()
        finally:
            self.hub.unlisten(lst)

    # ---------------------------------------------------------------- SELECT / EXAMINE
    async def cmd_select(self, cmd: Command) -> Ok | None:
        args = cmd.args
        assert isinstance(args, Select)
        previous = self.selected
        if self.selected is not None:
            self.selected = None
            self.state = State.AUTHENTICATED
            self.send(response.untagged_status("OK", "Previous mailbox closed", "CLOSED"))  # RFC 7162 §3.2.11
        if args.qresync is not None and not self.qresync:
            raise Bad("QRESYNC not enabled")  # RFC 7162 §3.2.5
        if args.condstore:
            self.enabled.add("CONDSTORE")  # RFC 7162 §3.1.8: SELECT (CONDSTORE) enables it
        mb = await mailboxes.get_existing(self, args.mailbox)
        readonly = args.readonly
        view = await SelectedMailbox.open(
            self.store,
            mb,
            self.claims,
            readonly=readonly,
            rev2=self.rev2,
            condstore=self.condstore,
            qresync=self.qresync,
            previous=previous,
        )
        mb = view.mailbox
        flags: list[response.Value] = [
            response.Atom(f) for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
        ]
        perm = view.permanent_flags()
        self.send(response.untagged("FLAGS", flags + perm[5:]))
        self.send(response.exists(view.exists))
        if not self.rev2:
            self.send(response.recent(len(view.recent)))
            unseen = next(
                (i + 1 for i, u in enumerate(view.uids) if "\\Seen" not in view.records[u].flags), None
            )
            if unseen is not None:
                self.send(response.untagged_status("OK", "First unseen", f"UNSEEN {unseen}"))
        self.send(response.untagged_status("OK", "UIDs valid", f"UIDVALIDITY {mb.uidvalidity}"))
        self.send(response.untagged_status("OK", "Predicted next UID", f"UIDNEXT {mb.uidnext}"))
        if readonly:
            self.send(response.untagged_status("OK", "No permanent flags permitted", "PERMANENTFLAGS ()"))
        else:
            codes = " ".join(a.value for a in perm if isinstance(a, response.Atom))
            self.send(response.untagged_status("OK", "Flags permitted", f"PERMANENTFLAGS ({codes} \\*)"))
        # RFC 7162 §3.1.2.1: HIGHESTMODSEQ with every SELECT/EXAMINE
        self.send(response.untagged_status("OK", "Highest", f"HIGHESTMODSEQ {view.known_modseq}"))
        if self.rev2:  # RFC 9051 §6.3.2: the mailbox name as the server knows it
            self.send(response.list_response(["\\HasNoChildren"], "/", mb.name, utf8=self.utf8))
        if args.qresync is not None and args.qresync.uidvalidity == mb.uidvalidity:
            await self._qresync_select(view, args)
        self.selected = view
        self.state = State.SELECTED
        return Ok(f"{cmd.name} completed", "READ-ONLY" if readonly else "READ-WRITE")

    async def _qresync_select(self, view: SelectedMailbox, args: Select) -> None:
        """RFC 7162 §3.2.5.2: VANISHED (EARLIER) and FETCH for what changed since ``modseq``."""
        q = args.qresync
        assert q is not None
        gone = await self.store.expunged_since(view.mailbox.id, q.modseq)
        if q.known_uids is not None and gone:
            top = max(max(gone), view.uids[-1] if view.uids else 0)
            gone = [u for u in gone if q.known_uids.contains(u, top)]
        if gone:
            self.send(response.vanished(SequenceSet.from_numbers(gone), earlier=True))
        for uid in view.uids:
            rec = view.records[uid]
            if rec.modseq > q.modseq:
                if q.known_uids is not None and not q.known_uids.contains(uid, view.uids[-1]):
                    continue
                seq = view.seq_of(uid)
                assert seq is not None
                self.send(view.flags_fetch(seq, uid, with_uid=True))

    async def cmd_close(self, cmd: Command) -> Ok | None:
        view = self.selected
        assert view is not None
        self.selected = None
        self.state = State.AUTHENTICATED
        if not view.readonly:  # RFC 9051 §6.4.1: silently expunge \Deleted, no responses
            uids = [u for u in view.uids if "\\Deleted" in view.records[u].flags]
            if uids:
                await self.store.expunge(view.mailbox.id, uids)
        return None

    async def cmd_unselect(self, cmd: Command) -> Ok | None:
        self.selected = None  # RFC 3691: no expunge
        self.state = State.AUTHENTICATED
        return None

    async def cmd_check(self, cmd: Command) -> Ok | None:
        return None  # RFC 3501 §6.4.1: every change is already durable

    # ---------------------------------------------------------------- NOTIFY (RFC 5465)
    async def cmd_notify(self, cmd: Command) -> Ok | None:
        return await notify.cmd_notify(self, cmd)  # notify.py

    def _stop_notify(self) -> None:
        notify.stop(self)

    async def _deliver_notifications(self, lst: Listener, *, in_command: bool) -> None:
        await notify.deliver(self, lst, in_command=in_command)


class _AlreadyAnswered(Exception):
    """A handler sent its own tagged reply (STARTTLS, COMPRESS, IDLE error)."""


COMMANDS: dict[str, Handler] = {
    "CAPABILITY": IMAPSession.cmd_capability,
    "NOOP": IMAPSession.cmd_noop,
    "LOGOUT": IMAPSession.cmd_logout,
    "ID": IMAPSession.cmd_id,
    "STARTTLS": IMAPSession.cmd_starttls,
    "LOGIN": IMAPSession.cmd_login,
    "AUTHENTICATE": IMAPSession.cmd_authenticate,
    "ENABLE": IMAPSession.cmd_enable,
    "NAMESPACE": IMAPSession.cmd_namespace,
    "COMPRESS": IMAPSession.cmd_compress,
    "IDLE": IMAPSession.cmd_idle,
    "SELECT": IMAPSession.cmd_select,
    "EXAMINE": IMAPSession.cmd_select,
    "CLOSE": IMAPSession.cmd_close,
    "UNSELECT": IMAPSession.cmd_unselect,
    "CHECK": IMAPSession.cmd_check,
    "NOTIFY": IMAPSession.cmd_notify,
    "CREATE": mailboxes.cmd_create,
    "DELETE": mailboxes.cmd_delete,
    "RENAME": mailboxes.cmd_rename,
    "SUBSCRIBE": mailboxes.cmd_subscribe,
    "UNSUBSCRIBE": mailboxes.cmd_unsubscribe,
    "LIST": mailboxes.cmd_list,
    "LSUB": mailboxes.cmd_lsub,
    "STATUS": mailboxes.cmd_status,
    "APPEND": append_mod.cmd_append,
    "FETCH": fetch.cmd_fetch,
    "UID FETCH": fetch.cmd_fetch,
    "STORE": store_cmd.cmd_store,
    "UID STORE": store_cmd.cmd_store,
    "COPY": store_cmd.cmd_copy,
    "UID COPY": store_cmd.cmd_copy,
    "MOVE": store_cmd.cmd_move,
    "UID MOVE": store_cmd.cmd_move,
    "EXPUNGE": store_cmd.cmd_expunge,
    "UID EXPUNGE": store_cmd.cmd_expunge,
    **extensions.COMMANDS,
}

_ANY = frozenset(("CAPABILITY", "NOOP", "LOGOUT", "ID"))
_AUTH = (
    _ANY
    | {
        "ENABLE",
        "NAMESPACE",
        "COMPRESS",
        "IDLE",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "DELETE",
        "RENAME",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "LIST",
        "LSUB",
        "STATUS",
        "APPEND",
        "NOTIFY",
    }
    | extensions.AUTH_COMMANDS
)
_SELECTED = (
    _AUTH
    | {
        "CLOSE",
        "UNSELECT",
        "CHECK",
        "FETCH",
        "UID FETCH",
        "STORE",
        "UID STORE",
        "COPY",
        "UID COPY",
        "MOVE",
        "UID MOVE",
        "EXPUNGE",
        "UID EXPUNGE",
    }
    | extensions.SELECTED_COMMANDS
)

ALLOWED: dict[State, frozenset[str]] = {
    State.NOT_AUTHENTICATED: _ANY | {"STARTTLS", "LOGIN", "AUTHENTICATE"},
    State.AUTHENTICATED: frozenset(_AUTH),
    State.SELECTED: frozenset(_SELECTED),
    State.LOGOUT: frozenset(),
}
