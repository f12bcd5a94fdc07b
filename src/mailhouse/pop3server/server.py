"""POP3 listeners: ``pop3`` (port 110, STLS) and ``pop3s`` (port 995, implicit TLS, RFC 8314).

One asyncio adapter over the sans-IO core ``proto.pop3``, a push-mode session on the
connection runtime (``mailhouse.runtime.Connection``, an ``asyncio.Protocol``; no
streams layer): ``on_data`` feeds the core, each event runs through the explicit
dispatch table ``COMMANDS`` against the accounts service and the store, and replies
go to ``Connection.writelines``. The INBOX is
the maildrop (see ``maildrop.py``); the exclusive maildrop lock is the store's
``try_lock_maildrop`` (flock on one host, a PostgreSQL advisory lock across
nodes).

RFCs: 1939 (POP3), 2449 (CAPA, response codes, PIPELINING), 2595 §4 (STLS),
3206 (``[AUTH]``, ``[SYS/TEMP]``), 5034 (AUTH), 6856 (UTF8), 8314 (port 995).
No APOP: it needs the plaintext password on the server (we store argon2id and
SCRAM keys only) and rests on MD5; SCRAM-SHA-256 is the challenge-response
mechanism offered instead (see ``proto/pop3.py``).

Invariants
----------
* DELE only marks; deletions happen in UPDATE after ``QUIT`` (RFC 1939 §6).
  A dropped connection, an idle timeout, a drain or a crash deletes nothing.
* The maildrop lock is taken after authentication and released on every path
  out of the session, before the final ``+OK`` of QUIT is sent (so a client
  that reconnects at once is not refused ``[IN-USE]``).
* USER/PASS/AUTH are refused on an unencrypted connection unless
  ``[auth] allow_plaintext`` is set (RFC 2595 §2.1-ish policy, Dovecot's
  ``disable_plaintext_auth``); USER and SASL are not advertised there either.
* Plaintext received before the STLS handshake finished is discarded: reading
  is paused before the ``+OK`` (``Connection.start_tls``), and what was read
  with STLS is dropped by the core (RFC 2595 §4; CVE-2011-0411 class).
* Errors are caught once per command: in ``_pump`` for the immediate part, in
  ``_run_pending`` for the waiting part; a bug answers ``-ERR [SYS/TEMP]`` and
  is logged with a traceback; the session goes on.
* Passwords, SASL responses and message bodies never reach the log.
* Replies are collected (``reply``) and written in one ``writelines`` when the
  session waits for more input (``_flush``), so pipelined commands (RFC 2449
  §6.6) cost one write per batch, not per command.
* Flow control: while the transport is paused for writing no command runs;
  while a command waits or writing is paused, input only accumulates in the
  core up to ``MAX_PENDING_INPUT`` octets, then reading is paused.
* Limits: command line length (core), the runtime's :class:`~mailhouse.runtime.Limits`
  (write high-water mark, stalled-writer and TLS handshake timeouts), idle timeout
  and drain (one ticker per session, ``_tick``), login throttling (``svc.auth``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from mailhouse import metrics
from mailhouse.accounts import sasl_flow
from mailhouse.config import Listener
from mailhouse.log import ConnLogger
from mailhouse.pop3server import stream
from mailhouse.pop3server.maildrop import Maildrop, Vanished, top
from mailhouse.proto import pop3 as core
from mailhouse.proto import sasl
from mailhouse.proto.pop3 import ResponseCode, err, ok
from mailhouse.runtime import Connection, Limits, read_auth_line, start_listener
from mailhouse.runtime.connlimits import ConnectionGate, Refusal, policy_from_config
from mailhouse.store.api import Account, MaildropLease, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from mailhouse.services import Services

log = logging.getLogger(__name__)

TLS_HANDSHAKE_TIMEOUT: Final = 30.0
#: Seconds between checks for a server drain while a session waits for input.
DRAIN_POLL: Final = 0.5
#: RETR/TOP bodies up to this size are written in one piece; bigger ones in chunks with drain.
WRITE_WHOLE_LIMIT: Final = 1024 * 1024
WRITE_CHUNK: Final = 256 * 1024
#: Buffered replies are written once they reach this size, even mid-batch.
FLUSH_AT: Final = 256 * 1024
#: Seconds a maildrop lock release may take (a database round trip with PostgreSQL).
LOCK_RELEASE_TIMEOUT: Final = 10.0
#: Unparsed input kept while a command waits or the client does not read; then reading pauses.
MAX_PENDING_INPUT: Final = 64 * 1024
#: RFC 2449 §6.9: IMPLEMENTATION is free text for diagnostics.
IMPLEMENTATION: Final = "Mailhouse"

PLAINTEXT_REFUSED: Final = err(
    "Plaintext authentication disallowed on non-secure connections, use STLS", ResponseCode.AUTH
)  # RFC 3206 §5 / RFC 2595 §2.1: no cleartext passwords without TLS
AUTH_FAILED: Final = err("Authentication failed", ResponseCode.AUTH)  # RFC 3206 §5
IN_USE: Final = err("Mailbox is locked by another POP3 session", ResponseCode.IN_USE)  # RFC 2449 §8.1.1
TEMP_FAILURE: Final = err("Temporary server failure, try again later", ResponseCode.SYS_TEMP)  # RFC 3206 §4
#: What a handler returns: None when it is done, or the coroutine of its waiting part.
Pending = Awaitable[None] | None

NO_SUCH_MESSAGE: Final = err("No such message")
VANISHED: Final = err("Message was expunged by another session")


def limits_for(svc: Services) -> Limits:
    """The runtime limits of one POP3 connection (read per connection: a reload applies to new ones)."""
    return Limits(
        max_line=core.MAX_COMMAND_LINE,  # RFC 2449 §4: 255 octets
        max_auth_line=core.MAX_AUTH_LINE,  # RFC 5034 §4: base64 SASL responses
        max_message=svc.cfg.max_message_size,
        idle_timeout=svc.cfg.pop3_idle_timeout,  # RFC 1939 §3: autologout ≥ 10 minutes
        session_timeout=svc.cfg.session_timeout,  # issue 12 item 6: a whole-session cap
        preauth_timeout=svc.cfg.preauth_timeout,  # AUTHORIZATION state: Dovecot's login 3 min
        stress_timeout=svc.cfg.stress_timeout,
        connection_budget=svc.cfg.connection_budget,
        write_stall_timeout=svc.cfg.pop3_idle_timeout,  # a client that reads nothing is idle too
        tls_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
        max_buffered_input=MAX_PENDING_INPUT,
    )


class Pop3Session:
    """One POP3 connection: a push-mode handler of a runtime ``Connection`` that feeds the core directly.

    ``on_data`` hands the bytes to the core and runs every complete command at once
    (``_pump``). Handlers are plain functions; the few that must wait (login, STLS, QUIT's
    UPDATE, a RETR whose message was not read ahead, big bodies) return a coroutine, which
    runs as the session's one task (``_busy``) while further input only accumulates in the
    core; when it is done the pump goes on with the next buffered command. Sequential
    RETR/DELE thus costs no task switch and no stream layer: one ``transport.writelines``
    per batch of replies.
    """

    def __init__(self, svc: Services, mode: str, conn: Connection) -> None:
        self.svc = svc
        self.cfg = svc.cfg
        self.mode = mode  # "pop3" | "pop3s"
        self.conn = conn
        self.limits = conn.limits
        self.cid = secrets.token_hex(4)
        self.log = ConnLogger(log, {"cid": self.cid})
        self.ip = conn.peer_ip
        self.tls = conn.tls  # pop3s: TLS from the first byte
        self.core = core.POP3ServerProtocol(tls_available=True, tls_active=self.tls)
        self.username: str | None = None  # from USER, until PASS
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None
        self.lease: MaildropLease | None = None
        self.utf8 = False
        self.closing = False  # no more commands are run
        self._finished = False  # _finish ran
        self._lost = False  # connection_lost seen
        self._eof = False  # the client closed its side
        self._out: list[bytes] = []  # replies not written yet
        self._out_len = 0
        self._busy: asyncio.Task[None] | None = None  # the handler coroutine being awaited
        self._input: asyncio.Future[bool] | None = None  # a coroutine waits for input (SASL)
        self._draining_out = False  # a coroutine waits in Connection.drain
        self._read_paused = False
        self._ticker: asyncio.TimerHandle | None = None  # drain / idle watch (see _tick)
        self._idle_since = 0.0
        self._done: asyncio.Future[None] | None = None  # resolved by _finish
        self._release: asyncio.Task[None] | None = None  # lease release after a disconnect

    # ---------------------------------------------------------------- runtime.DataHandler
    def open(self) -> Awaitable[None]:
        """Start the session (greeting, timers); the returned awaitable is the session's lifetime,
        which the runtime runs as the task the node's drain waits for."""
        self.loop = asyncio.get_running_loop()
        self._done = self.loop.create_future()
        self.log.info("connect from %s mode=%s", self.ip, self.mode)
        self.reply(ok(f"{IMPLEMENTATION} POP3 server ready"))  # RFC 1939 §4; no APOP timestamp
        self._ticker = self.loop.call_later(DRAIN_POLL, self._tick)
        self.conn.set_handler(self)
        self._pump()
        return self._lifetime()

    def on_data(self, data: bytes) -> None:
        self.core.receive_data(data)
        if self._busy is None and not self.conn.writing_paused:
            self._pump()
            return
        if self._input is not None and not self._input.done():
            self._input.set_result(True)
        elif self.core.buffered > MAX_PENDING_INPUT and not self._read_paused:
            self._read_paused = True  # a pipelining client waits until we caught up
            self.conn.pause_reading()

    def on_eof(self) -> None:
        self._eof = True  # commands already received still run (a pipelined QUIT commits)
        if self._input is not None and not self._input.done():
            self._input.set_result(False)
        if self._busy is None and not self.conn.writing_paused:
            self._pump()  # we close the transport ourselves once the replies are out

    def on_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if exc is not None:
            self.log.info("connection lost: %s", type(exc).__name__)
        if self._input is not None and not self._input.done():
            self._input.set_result(False)
        if self._busy is None:
            self._finish()  # else the running handler finishes first (e.g. QUIT's UPDATE)

    def on_writable(self) -> None:
        if self._busy is None and not self.closing:
            self._pump()

    # ---------------------------------------------------------------- running commands
    def _pump(self) -> None:
        """Run every complete command the core holds, until one must wait or input runs out."""
        while not self.closing:
            ev = self.core.next_event()
            if ev is core.NEED_DATA:
                if self._eof or self._lost:
                    break  # the client is gone: no UPDATE (RFC 1939 §6)
                if self.svc.draining:
                    self._stop("drain")
                    return
                self._flush()  # the client sees every reply before we wait for it
                if not self.core.buffered:
                    # the timer runs from the end of the last command, not from the last octet:
                    # a partial line trickled in byte by byte is a deadline (issue 12 item 6)
                    self._idle_since = self.loop.time()
                if self._read_paused:
                    self._read_paused = False
                    self.conn.resume_reading()
                return
            handler = self.COMMANDS.get(type(ev))
            started = time.perf_counter()
            try:
                assert handler is not None, f"no handler for {type(ev).__name__}"
                pending = handler(self, ev)
            except Exception:
                self.log.exception("internal error handling %s", type(ev).__name__)
                self.reply(TEMP_FAILURE)
                continue
            if pending is not None:
                self._busy = self.loop.create_task(self._run_pending(ev, pending, started))
                return
            metrics.observe_since(metrics.COMMAND_SECONDS, started, "pop3", type(ev).__name__.lower())
            if self.conn.writing_paused:
                return  # resume_writing pumps on
        self._finish()

    async def _run_pending(self, ev: core.Event, pending: Awaitable[None], started: float) -> None:
        """The waiting part of one command (begun at STARTED, a `time.perf_counter()` reading);
        errors are caught here once (as in ``_pump``)."""
        try:
            await pending
        except (ConnectionError, ssl.SSLError) as e:
            self.log.info("connection lost: %s", type(e).__name__)
            self.closing = True
        except asyncio.CancelledError:
            self.closing = True
            self._busy = None
            raise
        except StoreUnavailable as e:  # the database, not the client, went away (issue 12 item 11)
            self.log.warning("store unavailable handling %s: %s", type(ev).__name__, e)
            self.reply(TEMP_FAILURE)  # RFC 3206 §4 [SYS/TEMP]
        except Exception:
            self.log.exception("internal error handling %s", type(ev).__name__)
            self.reply(TEMP_FAILURE)
        metrics.observe_since(metrics.COMMAND_SECONDS, started, "pop3", type(ev).__name__.lower())
        self._busy = None
        if self.closing or self._lost:
            self._finish()
        elif not self.conn.writing_paused:
            self._pump()

    async def _lifetime(self) -> None:
        """The task the node tracks for this connection (``svc.track``): done when the session is."""
        assert self._done is not None
        try:
            await self._done
        except asyncio.CancelledError:  # the node gave up draining: drop the connection now
            if self._busy is not None:
                self._busy.cancel()
            self.conn.abort()
            self._finish()
            if self._release is not None:
                await self._release
            raise
        if self._release is not None:
            await self._release

    def _finish(self) -> None:
        """End the session (every path): unlock without UPDATE, close the connection."""
        if self._finished:
            return
        self._finished = True
        self.closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._flush()
        lease, self.lease = self.lease, None
        if lease is not None:  # no UPDATE: nothing marked by DELE is removed
            self._release = self.loop.create_task(self._release_lease(lease))
        if self.maildrop is not None:
            self.maildrop.close()
        self.conn.close_nowait()  # after what is buffered was sent
        self.log.info("disconnect from %s", self.ip)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def _release_lease(self, lease: MaildropLease) -> None:
        try:
            await asyncio.wait_for(lease.release(), LOCK_RELEASE_TIMEOUT)
        except Exception:  # the lock dies with its holder (file or database session) anyway
            self.log.exception("releasing the maildrop lock failed")

    def _stop(self, why: str) -> None:
        """Idle timeout or server drain while the session waits for the client."""
        if why == "idle":
            # RFC 1939 §3: autologout timer; the session ends without entering UPDATE
            self.reply(err("Autologout: idle for too long"))
        else:
            # no UPDATE: marked messages stay (RFC 1939 §6); the client may retry elsewhere
            self.reply(err("Server shutting down", ResponseCode.SYS_TEMP))
        self.closing = True
        if self._input is not None and not self._input.done():
            self._input.set_result(False)  # the SASL exchange ends; _run_pending finishes
        elif self._draining_out:
            self.conn.abort()  # a body is stuck in a client that stopped reading
        elif self._busy is None:
            if self.conn.writing_paused:
                self.conn.abort()  # the client reads nothing: do not wait for it
            self._finish()

    def _tick(self) -> None:
        """One timer per session (every ``DRAIN_POLL`` s), not one per read: drain and idle watch."""
        self._ticker = None
        if self._finished:
            return
        if self._busy is None or self._input is not None or self._draining_out:  # waiting for the client
            if self.svc.draining and not self.closing:
                self._stop("drain")
            elif not self.closing and (
                # RFC 1939 §3 autologout; shorter in the AUTHORIZATION state and under stress
                self.loop.time() - self._idle_since >= self.conn.idle_limit(preauth=self.account is None)
                # issue 12 item 6: input cannot extend a session, nor the login phase
                or self.conn.session_expired(preauth=self.account is None)
            ):
                self._stop("idle")
        if not self._finished:
            self._ticker = self.loop.call_later(DRAIN_POLL, self._tick)

    # ---------------------------------------------------------------- output
    def reply(self, data: bytes) -> None:
        """Queue a reply; it goes out when the session waits for input (or at ``FLUSH_AT``)."""
        self._out.append(data)
        self._out_len += len(data)
        if self._out_len >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if self._out:
            out = self._out
            self._out = []
            self._out_len = 0
            self.conn.writelines(out)

    async def _drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark again (runtime drain:
        a client that reads nothing for ``Limits.write_stall_timeout`` is dropped)."""
        self._idle_since = self.loop.time()  # a client that reads nothing is idle too
        self._draining_out = True
        try:
            await self.conn.drain()
        finally:
            self._draining_out = False

    async def _wait_input(self) -> bool:
        """Inside a waiting command (SASL): wait for more input; False on EOF, idle or drain."""
        if self._lost or self._eof or self.closing:
            return False
        self._flush()
        self._idle_since = self.loop.time()
        if self._read_paused:
            self._read_paused = False
            self.conn.resume_reading()
        self._input = self.loop.create_future()
        try:
            return await self._input
        finally:
            self._input = None

    def _login_allowed(self) -> bool:
        return self.tls or self.cfg.allow_plaintext_auth

    # ---------------------------------------------------------------- AUTHORIZATION
    def _capabilities(self) -> list[bytes]:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]  # RFC 2449 §6
        # RFC 2449 §6.7-6.8: the server never expires mail and imposes no login delay
        caps += ["EXPIRE NEVER", "LOGIN-DELAY 0"]
        if self.core.state is core.Pop3State.AUTHORIZATION:
            if self._login_allowed():
                caps.append("USER")  # RFC 2449 §6.3
                caps.append("SASL " + " ".join(sasl_flow.MECHANISMS))  # RFC 2449 §6.4 / RFC 5034 §3
            if not self.tls:
                caps.append("STLS")  # RFC 2595 §4
            caps.append("UTF8 USER")  # RFC 6856 §2: UTF8 command; UTF-8 in USER/PASS
        caps.append(f"IMPLEMENTATION {IMPLEMENTATION}")  # RFC 2449 §6.9
        return [c.encode("ascii") for c in caps]

    def on_capa(self, ev: core.Capa) -> Pending:
        self.reply(core.multiline("Capability list follows", self._capabilities()))
        return None

    def on_stls(self, ev: core.Stls) -> Pending:
        # RFC 2595 §4 / CVE-2011-0411: plaintext pipelined after STLS is never executed.
        # Reading is paused before the +OK, so the ClientHello waits in the socket for the
        # TLS layer; what was read with STLS is dropped by the core (start_tls_done).
        self._flush()  # replies to commands before STLS go out in plaintext, in order
        self.conn.pause_reading()  # at once: nothing more is read in plaintext (start_tls runs later)
        return self._start_tls()

    async def _start_tls(self) -> None:
        try:
            dropped = await self.conn.start_tls(
                ok("Begin TLS negotiation"), self.svc.tls, self.limits.tls_handshake_timeout
            )
        except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as e:
            self.log.info("TLS handshake failed: %s", type(e).__name__)
            self.closing = True
            return
        self._read_paused = False
        discarded = self.core.buffered + dropped
        if discarded:
            self.log.info("discarded %d octets of plaintext pipelined after STLS", discarded)
        self.core.start_tls_done()
        self.tls = True
        self.username = None
        early = self.conn.take_buffered()
        if early:  # sent by the client over TLS while we were finishing the switch
            self.core.receive_data(early)

    def on_utf8(self, ev: core.Utf8) -> Pending:
        self.utf8 = True  # RFC 6856 §2: we send messages unmodified either way
        self.reply(ok("UTF8 enabled"))
        return None

    def on_user(self, ev: core.User) -> Pending:
        if not self._login_allowed():
            self.username = None
            self.reply(PLAINTEXT_REFUSED)
            return None
        self.username = ev.name
        self.reply(ok())  # RFC 1939 §7: never reveal whether the mailbox exists
        return None

    def on_pass(self, ev: core.Pass) -> Pending:
        user, self.username = self.username, None
        if not self._login_allowed():
            self.reply(PLAINTEXT_REFUSED)
            return None
        if user is None:
            self.reply(err("USER first"))
            return None
        return self._pass(user, ev.password.decode("utf-8", "replace"))

    async def _pass(self, user: str, password: str) -> None:
        account = await self.svc.auth.check(user, password, self.ip, "pop3")  # waits the shared per-IP delay
        if account is None:
            self.reply(AUTH_FAILED)
            return
        await self._open_maildrop(account, "USER")

    def on_auth(self, ev: core.Auth) -> Pending:
        if not self._login_allowed():
            self.reply(PLAINTEXT_REFUSED)
            return None
        if ev.mechanism not in sasl_flow.MECHANISMS:
            self.reply(err("Unsupported authentication mechanism"))
            return None
        return self._auth(ev)

    async def _auth(self, ev: core.Auth) -> None:
        async def send_challenge(b64: bytes) -> None:
            self.reply(b"+ " + b64 + b"\r\n")  # RFC 5034 §4: "+" SP base64
            self._flush()
            self.core.begin_auth_continuation()

        # The core hands the initial response decoded; sasl_flow takes it as on the wire.
        initial = None if ev.initial is None else (base64.b64encode(ev.initial) if ev.initial else b"=")
        try:
            account = await sasl_flow.authenticate(
                self.svc.auth, ev.mechanism, initial, send_challenge, self._auth_line, self.ip, "pop3"
            )
        except sasl.SaslCancelled:
            self.reply(err("Authentication cancelled"))  # RFC 5034 §4
            return
        except sasl.SaslError:
            self.reply(err("Invalid SASL response"))
            return
        if account is None:
            self.log.info("login failed (AUTH %s)", ev.mechanism)
            self.reply(AUTH_FAILED)
            return
        await self._open_maildrop(account, f"AUTH {ev.mechanism}")

    async def _auth_line(self) -> bytes:
        return await read_auth_line(self._auth_poll, self._wait_input, max_octets=self.limits.max_auth_line)

    def _auth_poll(self) -> bytes | None:
        ev = self.core.next_event()
        if isinstance(ev, core.AuthResponse):
            return ev.line
        if isinstance(ev, core.AuthCancelled):
            raise sasl.SaslCancelled()
        if isinstance(ev, core.CommandError):
            raise sasl.SaslError("AUTH line error")
        if ev is core.NEED_DATA:
            return None
        raise sasl.SaslError("unexpected event during AUTH")

    async def _open_maildrop(self, account: Account, how: str) -> None:
        """Lock and snapshot the INBOX, then enter TRANSACTION (RFC 1939 §4)."""
        # issue 12 item 5: per-account connection limits, counted once the password was right
        if self.conn.admit_login(str(account.id)) is not None:
            self.log.info("login of %s via %s refused: too many connections", account.address, how)
            self.reply(err("Too many connections", ResponseCode.IN_USE))  # RFC 2449 §8.1.1
            return
        try:
            await self._lock_maildrop(account, how)
        finally:
            if self.account is None:
                self.conn.release_login()  # not logged in after all: the login does not count

    async def _lock_maildrop(self, account: Account, how: str) -> None:
        try:
            mailbox = await self.svc.store.get_mailbox(account.id, "INBOX")
            if mailbox is None:
                mailbox = await self.svc.store.create_mailbox(account.id, "INBOX")
        except StoreError:
            self.log.exception("cannot open INBOX of %s", account.address)
            self.reply(TEMP_FAILURE)
            return
        lease = await self.svc.store.try_lock_maildrop(mailbox.id)  # RFC 1939 §8: exclusive access
        if lease is None:
            self.log.info("%s: maildrop in use", account.address)
            self.reply(IN_USE)
            return
        try:
            maildrop = await Maildrop.open(self.svc.store, mailbox)
        except BaseException:
            await lease.release()
            raise
        if self._lost:  # gone while we logged in: nothing to keep
            await lease.release()
            return
        self.lease = lease
        self.account = account
        self.maildrop = maildrop
        self.core.authenticated()
        self.log.info("authenticated as %s via %s; %d messages", account.address, how, len(maildrop))
        self.reply(ok(f"Logged in, {len(maildrop)} messages"))

    # ---------------------------------------------------------------- TRANSACTION
    def _md(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    def on_stat(self, ev: core.Stat) -> Pending:
        md = self._md()
        sizes = md.sizes(md.live())
        self.reply(ok(f"{len(sizes)} {sum(sizes.values())}"))  # RFC 1939 §5: "+OK nn mm"
        return None

    def on_list(self, ev: core.List) -> Pending:
        md = self._md()
        if ev.msg is not None:
            if not md.exists(ev.msg):
                self.reply(NO_SUCH_MESSAGE)
                return None
            self.reply(ok(f"{ev.msg} {md.size(ev.msg)}"))
            return None
        sizes = md.sizes(md.live())
        lines = [f"{n} {s}".encode("ascii") for n, s in sizes.items()]
        self.reply(core.multiline(f"{len(sizes)} messages ({sum(sizes.values())} octets)", lines))
        return None

    def on_uidl(self, ev: core.Uidl) -> Pending:
        md = self._md()
        if ev.msg is not None:
            if not md.exists(ev.msg):
                self.reply(NO_SUCH_MESSAGE)
                return None
            self.reply(ok(f"{ev.msg} {md.uidl(ev.msg)}"))
            return None
        lines = [f"{n} {md.uidl(n)}".encode("ascii") for n in md.live()]
        self.reply(core.multiline("Unique-ID listing follows", lines))
        return None

    def _send_body(self, first_line: bytes, body: bytes) -> Pending:
        self.reply(first_line)
        if len(body) <= WRITE_WHOLE_LIMIT:
            self.reply(core.dot_stuff_crlf(body))  # store blobs are CRLF (store.api)
            return None
        return self._stream_body(body)

    async def _stream_body(self, body: bytes) -> None:
        """A big body in chunks, each after the transport drained: one chunk in memory at a time."""
        self._flush()
        chunks = (body[i : i + WRITE_CHUNK] for i in range(0, len(body), WRITE_CHUNK))
        for piece in core.dot_stuff_stream(chunks):
            self.conn.write(piece)
            await self._drain()

    def _with_message(self, n: int, send: Callable[[bytes], Pending]) -> Pending:
        """Run SEND with message N's octets: at once when it was read ahead, else after the
        store read; ``-ERR`` for a number not in the maildrop or a message expunged meanwhile."""
        md = self._md()
        if not md.exists(n):
            self.reply(NO_SUCH_MESSAGE)
            return None
        try:
            data = md.read_nowait(n)  # read ahead: no store call, no wait
        except Vanished:
            self.reply(VANISHED)
            return None
        if data is None:
            return self._read_then(n, send)
        return send(data)

    async def _read_then(self, n: int, send: Callable[[bytes], Pending]) -> None:
        try:
            data = await self._md().read(n)
        except Vanished:
            self.reply(VANISHED)
            return
        pending = send(data)
        if pending is not None:
            await pending

    async def _stream_message(self, n: int, first_line: bytes, lines: int | None) -> None:
        """RETR (``lines`` None) or TOP of a big message, streamed from the blob: one chunk in
        memory at a time, each written after the transport drained (issue 12 item 2)."""
        md = self._md()

        async def read(offset: int, length: int) -> bytes:
            return await md.read_range(n, offset, length)

        size = md.size(n)
        try:
            end = size if lines is None else await stream.top_end(read, size, lines)
            await read(0, 0)  # gone already (expunged over IMAP)? then -ERR, nothing sent yet
        except Vanished:
            self.reply(VANISHED)
            return
        if lines is None:
            md.retrieved.add(n)
        self.reply(first_line)
        self._flush()
        try:
            async for piece in stream.body_chunks(read, end):
                self.conn.write(piece)
                await self._drain()
        except Vanished:
            # the +OK and part of the body are out: the framing cannot be repaired
            raise ConnectionAbortedError("message expunged while it was sent") from None

    def _big(self, n: int) -> bool:
        md = self._md()
        return md.exists(n) and md.size(n) >= stream.STREAM_MIN

    def on_retr(self, ev: core.Retr) -> Pending:
        md = self._md()
        if self._big(ev.msg):
            return self._stream_message(ev.msg, ok(f"{md.size(ev.msg)} octets"), None)

        def send(data: bytes) -> Pending:
            md.retrieved.add(ev.msg)
            return self._send_body(ok(f"{md.size(ev.msg)} octets"), data)

        return self._with_message(ev.msg, send)

    def on_top(self, ev: core.Top) -> Pending:
        if self._big(ev.msg):
            return self._stream_message(ev.msg, ok("Top of message follows"), ev.lines)

        def send(data: bytes) -> Pending:
            return self._send_body(ok("Top of message follows"), top(data, ev.lines))

        return self._with_message(ev.msg, send)

    def on_dele(self, ev: core.Dele) -> Pending:
        md = self._md()
        if not md.exists(ev.msg):
            # RFC 1939 §5: an already deleted message may not be deleted again
            self.reply(err("Message already deleted") if ev.msg in md.deleted else NO_SUCH_MESSAGE)
            return None
        md.deleted.add(ev.msg)
        self.reply(ok(f"Message {ev.msg} deleted"))
        return None

    def on_noop(self, ev: core.Noop) -> Pending:
        self.reply(ok())
        return None

    def on_rset(self, ev: core.Rset) -> Pending:
        md = self._md()
        md.deleted.clear()  # RFC 1939 §5: unmark all
        sizes = md.sizes(md.live())
        self.reply(ok(f"Maildrop has {len(sizes)} messages ({sum(sizes.values())} octets)"))
        return None

    def on_quit(self, ev: core.Quit) -> Pending:
        self.closing = True
        if self.core.state is not core.Pop3State.TRANSACTION:
            self.reply(ok(f"{IMPLEMENTATION} POP3 server signing off"))  # RFC 1939 §4
            return None
        self.core.quit_to_update()  # RFC 1939 §6: UPDATE state
        return self._update()

    async def _update(self) -> None:
        md = self._md()
        lease, self.lease = self.lease, None
        try:
            removed = await md.commit()
        except Exception:
            self.log.exception("UPDATE failed for %s", self.account.address if self.account else "?")
            if lease is not None:
                await self._release_lease(lease)
            self.reply(err("Some deleted messages not removed", ResponseCode.SYS_TEMP))  # RFC 1939 §6
            return
        if lease is not None:
            await self._release_lease(lease)  # before the +OK: a client reconnecting at once gets in
        left = len(md) - len(md.deleted)
        self.log.info("logout: %d removed, %d left", removed, left)
        self.reply(ok(f"{IMPLEMENTATION} POP3 server signing off ({left} messages left)"))

    def on_command_error(self, ev: core.CommandError) -> Pending:
        self.reply(ev.reply)
        return None

    def on_stray(self, ev: Any) -> Pending:
        self.reply(err("Unexpected SASL response"))  # only inside AUTH; never reached otherwise
        return None

    COMMANDS: dict[type, Callable[[Pop3Session, Any], Pending]] = {
        core.Capa: on_capa,
        core.Stls: on_stls,
        core.Utf8: on_utf8,
        core.User: on_user,
        core.Pass: on_pass,
        core.Auth: on_auth,
        core.AuthResponse: on_stray,
        core.AuthCancelled: on_stray,
        core.Stat: on_stat,
        core.List: on_list,
        core.Uidl: on_uidl,
        core.Retr: on_retr,
        core.Top: on_top,
        core.Dele: on_dele,
        core.Noop: on_noop,
        core.Rset: on_rset,
        core.Quit: on_quit,
        core.CommandError: on_command_error,
    }


#: Issue 12 item 5: the answer at accept time when a connection limit is reached (RFC 3206 §4
#: SYS/TEMP: a temporary condition, try again later).
REFUSALS = {r: b"-ERR [SYS/TEMP] Too many connections\r\n" for r in Refusal}


class Server:
    """The POP3 listeners of one node (pop3, pop3s) on the connection runtime."""

    def __init__(self, svc: Services, gate: ConnectionGate | None = None) -> None:
        self.svc = svc
        self.gate = gate or ConnectionGate(policy_from_config(svc.cfg))

    def limits(self) -> Limits:
        return limits_for(self.svc)

    async def listen(self, name: str, host: str, port: int) -> asyncio.base_events.Server:
        svc = self.svc

        async def session(conn: Connection) -> None:
            if await svc.auth.bans.is_banned(conn.peer_ip):  # issue 12 item 7: refused at connect
                conn.write(b"-ERR Access denied: too many failed logins\r\n")
                await conn.close()
                return
            await Pop3Session(svc, name, conn).open()

        return await start_listener(
            host,
            port,
            session,
            limits=self.limits,
            ssl_ctx=svc.tls if Listener(name).implicit_tls else None,  # RFC 8314 §3.3: implicit TLS
            track=svc.track,
            gate=self.gate,
            service=name,
            refusals=REFUSALS,
        )
