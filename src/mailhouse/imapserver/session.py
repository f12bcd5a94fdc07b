"""One IMAP connection: the live session object, its output queue, the read loop and dispatch.

RFCs: RFC 9051 (IMAP4rev2) §3 (states), §5.4 (autologout), §7.1 response codes, §7.1.5 (BYE);
RFC 5530 (SERVERBUG, UNAVAILABLE); RFC 7888 §4 (literal too big); RFC 3501 §7.4.1 (no
EXPUNGE while responding to FETCH, STORE, SEARCH).

Structure (DESIGN.md "Servers"): :class:`IMAPSession` is the
:class:`~mailhouse.imapserver.context.SessionContext` every handler receives. Commands are
looked up in the one table of ``commands`` (:data:`~mailhouse.imapserver.commands.COMMANDS`,
gated by :data:`~mailhouse.imapserver.commands.ALLOWED`); handlers live in one module per
command family under ``commands/`` and raise the typed errors of ``errors``;
:meth:`IMAPSession._run_command` catches them once per command. What the session tells the
client unasked (mailbox updates, NOTIFY) is ``updates.py``.

Invariants:

* A handler never writes to the socket directly: it queues with :meth:`IMAPSession.send` and
  the dispatcher flushes once per command (large FETCHes flush as they go).
* Mailbox updates of other sessions are only sent where RFC 9051 §7 allows: after every
  command in selected state (EXPUNGE/VANISHED not after FETCH/STORE/SEARCH/SORT/THREAD),
  during IDLE, and — with NOTIFY — while no command is in progress.
* Credentials, SASL responses and message contents never reach the log.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from typing import TYPE_CHECKING, Any

from mailhouse import metrics
from mailhouse.log import ConnLogger
from mailhouse.proto.imap import (
    NEED_DATA,
    AuthContinuation,
    Command,
    CommandError,
    ContinuationNeeded,
    ErrorKind,
    IdleDone,
    IMAPServerProtocol,
    LiteralTooBig,
    ReplyStatus,
    response,
)
from mailhouse.runtime import LOAD
from mailhouse.store.api import Account, AlreadyExists, Conflict, NotFound, StoreError

from . import capabilities as caps_mod
from . import namespaces, updates
from .changes import Listener
from .commands import ALLOWED, COMMANDS
from .context import IMPLEMENTATION, TLS_HANDSHAKE_TIMEOUT, Ok, State
from .context import Transport as Conn
from .errors import AlreadyAnswered, ImapError
from .node import ImapNode
from .selected import SelectedMailbox

if TYPE_CHECKING:
    from mailhouse.services import Services

    from . import notify_state as notify  # the NOTIFY request a session holds (RFC 5465)

__all__ = ["IMPLEMENTATION", "TLS_HANDSHAKE_TIMEOUT", "IMAPSession", "Ok", "State"]

log = logging.getLogger(__name__)

DRAIN_POLL = 0.5  # seconds between drain checks while waiting for input
FLUSH_AT = 256 * 1024  # a handler's queued output is written once it exceeds this

# RFC 9051 §6.4.4 note / RFC 3501 §7.4.1: no EXPUNGE while responding to these (UID forms may).
NO_EXPUNGE_DURING = frozenset(("FETCH", "STORE", "SEARCH", "SORT", "THREAD"))


class IMAPSession:
    def __init__(self, svc: Services, node: ImapNode, conn: Conn, name: str) -> None:
        self.svc = svc
        self.cfg = svc.cfg
        self.store = svc.store
        self.node = node  # shared with the node's other sessions (server.Server)
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
        self._started = 0.0  # loop time the session started (run): the login phase counts from it

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
        return caps_mod.capabilities(self)

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
        deadline = self._input_deadline(loop.time())
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
            # FIRST_COMPLETED: a wake-up (IDLE, NOTIFY) must not wait for client input or the
            # drain poll (the default, ALL_COMPLETED, delayed every IDLE push by up to 0.5 s)
            done, _ = await asyncio.wait(
                waits, timeout=min(left, DRAIN_POLL), return_when=asyncio.FIRST_COMPLETED
            )
            if waker is not None and not waker.done():
                waker.cancel()
            if self._read_task in done:
                task, self._read_task = self._read_task, None
                return task.result()
            if waker is not None and waker in done:
                return None

    def _input_deadline(self, now: float) -> float:
        """When waiting for the client ends: RFC 9051 §5.4 autologout; issue 12 item 6 below."""
        cfg = self.cfg
        wait = cfg.imap_idle_timeout
        if LOAD.stressed:
            wait = min(wait, cfg.stress_timeout)  # timers shorten under stress (Postfix's stress)
        if self.state is State.NOT_AUTHENTICATED:
            # the login phase ends preauth_timeout after connecting, whatever the client sends
            # (Dovecot's login processes: 3 minutes); IDLE keeps authenticated sessions uncapped
            return min(now + wait, self._started + cfg.preauth_timeout)
        return now + wait

    def cancel_read(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()
            self._read_task = None

    # ---------------------------------------------------------------- main loop
    async def run(self) -> None:
        self.log.info("connect from %s mode=%s", self.ip, self.listener_name)
        self._started = asyncio.get_running_loop().time()
        try:
            if await self.svc.auth.bans.is_banned(self.ip):  # issue 12 item 7: refused at connect
                self.send(response.untagged_status("BYE", "Access denied: too many failed logins"))
                await self.flush()
                return
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
        return caps_mod.cap_code(self)

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
            elif isinstance(ev, CommandError) and ev.kind is ErrorKind.MAILBOX_NAME:
                # The core answers a mailbox name that is not valid modified UTF-7 with BAD; we
                # refuse it NO [CANNOT] (RFC 5530 §3) like our other mailbox-name checks.
                text = "Invalid mailbox name (modified UTF-7)"
                self.send(CommandError(ev.tag, ReplyStatus.NO, text, "CANNOT", ev.kind).reply_bytes)
            elif isinstance(ev, CommandError):
                self.send(ev.reply_bytes)
            elif isinstance(ev, Command):
                await self._run_command(ev)
                await self.conn.pace()  # issue 12 item 1: pipelined commands yield the loop in turns
            elif isinstance(ev, AuthContinuation | IdleDone):
                self.send(response.untagged_status("BAD", "Unexpected continuation"))
            await self.flush()

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
            await namespaces.check_selected(self, cmd)  # RFC 4314 §4: rights on a shared selected mailbox
            with metrics.timed(metrics.COMMAND_SECONDS, "imap", base):  # a COMMANDS name: bounded
                result = await handler(self, cmd)
        except AlreadyAnswered:
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
        except StoreError as e:  # StoreUnavailable included: the database, not the client, went away
            self.log.warning("store error in %s: %s", name, type(e).__name__)
            status, text, code = "NO", "Temporary failure, try again later", "UNAVAILABLE"  # RFC 5530 §3
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
        if view is None or not await namespaces.readable(self):  # RFC 4314 §4: updates need r
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
        await updates.report(self, view, allow_expunge=allow_expunge)

    # ---------------------------------------------------------------- authenticated
    def acc(self) -> Account:
        assert self.account is not None
        return self.account

    # ---------------------------------------------------------------- NOTIFY (RFC 5465, updates.py)
    def _stop_notify(self) -> None:
        updates.stop(self)

    async def _deliver_notifications(self, lst: Listener, *, in_command: bool) -> None:
        await updates.deliver(self, lst, in_command=in_command)
