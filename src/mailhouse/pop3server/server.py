"""POP3 listeners: ``pop3`` (port 110, STLS) and ``pop3s`` (port 995, implicit TLS, RFC 8314).

One asyncio adapter over the sans-IO core ``proto.pop3``: it reads bytes, feeds
the core, runs each event through the explicit dispatch table ``COMMANDS``
against the accounts service and the store, and writes the reply. The INBOX
is the maildrop (see ``maildrop.py``); the exclusive maildrop lock is in
``lock.py``.

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
* Plaintext received before the STLS handshake finished is discarded, both in
  the core's buffer and in the stream's buffer (CVE-2011-0411 class).
* Errors are caught once per event (``_dispatch``): a bug answers
  ``-ERR [SYS/TEMP]`` and is logged with a traceback; the session goes on.
* Passwords, SASL responses and message bodies never reach the log.
* Replies are collected (``reply``) and written in one piece when the session
  waits for more input (``flush``), so pipelined commands (RFC 2449 §6.6) cost
  one write per batch, not per command; ``write`` is reply + flush, for the
  points where the client must see the reply before we go on (STLS, SASL).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from mailhouse import app, tls
from mailhouse.accounts import sasl_flow
from mailhouse.log import ConnLogger, safe
from mailhouse.pop3server.lock import FileMaildropLocks, MaildropLease, MaildropLocks
from mailhouse.pop3server.maildrop import Maildrop, Vanished, top
from mailhouse.proto import pop3 as core
from mailhouse.proto import sasl
from mailhouse.proto.pop3 import ResponseCode, err, ok
from mailhouse.store.api import Account, StoreError

if TYPE_CHECKING:
    from mailhouse.services import Services

log = logging.getLogger(__name__)

READ_SIZE: Final = 64 * 1024
TLS_HANDSHAKE_TIMEOUT: Final = 30.0
#: Seconds between checks for a server drain while a session waits for input.
DRAIN_POLL: Final = 0.5
#: RETR/TOP bodies up to this size are written in one piece; bigger ones in chunks with drain.
WRITE_WHOLE_LIMIT: Final = 1024 * 1024
WRITE_CHUNK: Final = 256 * 1024
#: Buffered replies are flushed (with drain) once they reach this size, even mid-batch.
FLUSH_AT: Final = 256 * 1024
#: RFC 2449 §6.9: IMPLEMENTATION is free text for diagnostics.
IMPLEMENTATION: Final = "Mailhouse"

PLAINTEXT_REFUSED: Final = err(
    "Plaintext authentication disallowed on non-secure connections, use STLS", ResponseCode.AUTH
)  # RFC 3206 §5 / RFC 2595 §2.1: no cleartext passwords without TLS
AUTH_FAILED: Final = err("Authentication failed", ResponseCode.AUTH)  # RFC 3206 §5
IN_USE: Final = err("Mailbox is locked by another POP3 session", ResponseCode.IN_USE)  # RFC 2449 §8.1.1
TEMP_FAILURE: Final = err("Temporary server failure, try again later", ResponseCode.SYS_TEMP)  # RFC 3206 §4
NO_SUCH_MESSAGE: Final = err("No such message")
VANISHED: Final = err("Message was expunged by another session")


class Pop3Session:
    def __init__(
        self,
        svc: Services,
        mode: str,
        locks: MaildropLocks,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.svc = svc
        self.cfg = svc.cfg
        self.mode = mode  # "pop3" | "pop3s"
        self.locks = locks
        self.reader = reader
        self.writer = writer
        self.tls = writer.get_extra_info("sslcontext") is not None
        self.core = core.POP3ServerProtocol(tls_available=True, tls_active=self.tls)
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.ip = str(peer[0])
        self.cid = secrets.token_hex(4)
        self.log = ConnLogger(log, {"cid": self.cid})
        self.username: str | None = None  # from USER, until PASS
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None
        self.lease: MaildropLease | None = None
        self.utf8 = False
        self.closing = False
        self._out: list[bytes] = []  # replies not written yet
        self._out_len = 0
        self._ticker: asyncio.TimerHandle | None = None  # drain / idle watch (see _read)
        self._wake: str | None = None  # "drain" | "idle": why the session stops reading
        self._idle_deadline = 0.0
        self._reading = False

    # ---------------------------------------------------------------- I/O
    async def reply(self, data: bytes) -> None:
        """Queue a reply; it goes out at the next ``flush`` (before we wait for input)."""
        self._out.append(data)
        self._out_len += len(data)
        if self._out_len >= FLUSH_AT:
            await self.flush()

    async def flush(self) -> None:
        if self._out:
            out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._out_len = 0
            self.writer.write(out)
            await self.writer.drain()

    async def write(self, data: bytes) -> None:
        await self.reply(data)
        await self.flush()

    async def _read(self) -> bytes:
        """Next bytes from the client; ``b""`` on EOF, idle timeout or server drain.

        No timer per read: one ticker per session (``_tick``, every ``DRAIN_POLL`` s) ends
        a pending read with EOF when the server drains or the session idled too long.
        """
        loop = asyncio.get_running_loop()
        if self._ticker is None and self._wake is None:
            self._ticker = loop.call_later(DRAIN_POLL, self._tick)
        if self.svc.draining:
            self._wake = "drain"
        if self._wake is None:
            self._idle_deadline = loop.time() + self.cfg.pop3_idle_timeout
            self._reading = True
            try:
                data = await self.reader.read(READ_SIZE)
            finally:
                self._reading = False
            if data or self._wake is None:
                return data  # b"": the client closed
        if self._wake == "idle":
            # RFC 1939 §3: autologout timer; the session ends without entering UPDATE
            await self.write(err("Autologout: idle for too long"))
        else:
            # no UPDATE: marked messages stay (RFC 1939 §6); the client may retry elsewhere
            await self.write(err("Server shutting down", ResponseCode.SYS_TEMP))
        self.closing = True
        return b""

    def _tick(self) -> None:
        self._ticker = None
        if self.closing:
            return
        loop = asyncio.get_running_loop()
        if self._reading and self._wake is None:
            if self.svc.draining:
                self._wake = "drain"
            elif loop.time() >= self._idle_deadline:
                self._wake = "idle"
            if self._wake is not None:
                self.reader.feed_eof()  # the pending read() returns what is buffered, then b""
                return
        self._ticker = loop.call_later(DRAIN_POLL, self._tick)

    async def run(self) -> None:
        self.log.info("connect from %s mode=%s", self.ip, self.mode)
        try:
            await self.write(ok(f"{IMPLEMENTATION} POP3 server ready"))  # RFC 1939 §4; no APOP timestamp
            await self._loop()
            await self.flush()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            self.log.info("connection lost: %s", type(e).__name__)
        finally:
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
            self._unlock()  # no UPDATE: nothing marked by DELE is removed
            if self.maildrop is not None:
                self.maildrop.close()
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2.0)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                pass
            self.log.info("disconnect from %s", self.ip)

    async def _loop(self) -> None:
        while not self.closing:
            ev = self.core.next_event()
            if ev is core.NEED_DATA:
                await self.flush()  # the client sees every reply before we wait for it
                data = await self._read()
                if not data:
                    return
                self.core.receive_data(data)
                continue
            await self._dispatch(ev)

    async def _dispatch(self, ev: core.Event) -> None:
        handler = self.COMMANDS.get(type(ev))
        try:
            assert handler is not None, f"no handler for {type(ev).__name__}"
            await handler(self, ev)
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception:
            self.log.exception("internal error handling %s", type(ev).__name__)
            await self.reply(TEMP_FAILURE)

    def _unlock(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()

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

    async def on_capa(self, ev: core.Capa) -> None:
        await self.reply(core.multiline("Capability list follows", self._capabilities()))

    async def on_stls(self, ev: core.Stls) -> None:
        # RFC 2595 §4 / CVE-2011-0411: plaintext pipelined after STLS is never executed.
        # The shared upgrade pauses reading before the +OK and drops what the StreamReader
        # still holds; the core drops what it had already read (start_tls_done).
        await self.flush()  # replies to commands before STLS go out in plaintext, in order
        try:
            discarded = await tls.upgrade_server_stream(
                self.reader, self.writer, ok("Begin TLS negotiation"), self.svc.tls, TLS_HANDSHAKE_TIMEOUT
            )
        except (ssl.SSLError, TimeoutError, ConnectionError) as e:
            self.log.info("TLS handshake failed: %s", type(e).__name__)
            self.closing = True
            return
        if discarded:
            self.log.info("discarded %d octets of plaintext pipelined after STLS", discarded)
        self.core.start_tls_done()
        self.tls = True
        self.username = None

    async def on_utf8(self, ev: core.Utf8) -> None:
        self.utf8 = True  # RFC 6856 §2: we send messages unmodified either way
        await self.reply(ok("UTF8 enabled"))

    async def on_user(self, ev: core.User) -> None:
        if not self._login_allowed():
            self.username = None
            await self.reply(PLAINTEXT_REFUSED)
            return
        self.username = ev.name
        await self.reply(ok())  # RFC 1939 §7: never reveal whether the mailbox exists

    async def on_pass(self, ev: core.Pass) -> None:
        user, self.username = self.username, None
        if not self._login_allowed():
            await self.write(PLAINTEXT_REFUSED)
            return
        if user is None:
            await self.write(err("USER first"))
            return
        password = ev.password.decode("utf-8", "replace")
        account = await self.svc.auth.check(user, password, self.ip)  # waits the shared per-IP delay
        if account is None:
            self.log.info("login failed (USER) user=%s", safe(user, 100))
            await self.write(AUTH_FAILED)
            return
        await self._open_maildrop(account, "USER")

    async def on_auth(self, ev: core.Auth) -> None:
        if not self._login_allowed():
            await self.write(PLAINTEXT_REFUSED)
            return
        if ev.mechanism not in sasl_flow.MECHANISMS:
            await self.write(err("Unsupported authentication mechanism"))
            return

        async def send_challenge(b64: bytes) -> None:
            await self.write(b"+ " + b64 + b"\r\n")  # RFC 5034 §4: "+" SP base64
            self.core.begin_auth_continuation()

        # The core hands the initial response decoded; sasl_flow takes it as on the wire.
        initial = None if ev.initial is None else (base64.b64encode(ev.initial) if ev.initial else b"=")
        try:
            account = await sasl_flow.authenticate(
                self.svc.auth, ev.mechanism, initial, send_challenge, self._auth_line, self.ip
            )
        except sasl.SaslCancelled:
            await self.write(err("Authentication cancelled"))  # RFC 5034 §4
            return
        except sasl.SaslError:
            await self.write(err("Invalid SASL response"))
            return
        if account is None:
            self.log.info("login failed (AUTH %s)", ev.mechanism)
            await self.write(AUTH_FAILED)
            return
        await self._open_maildrop(account, f"AUTH {ev.mechanism}")

    async def _auth_line(self) -> bytes:
        while True:
            ev = self.core.next_event()
            if isinstance(ev, core.AuthResponse):
                return ev.line
            if isinstance(ev, core.AuthCancelled):
                raise sasl.SaslCancelled()
            if isinstance(ev, core.CommandError):
                raise sasl.SaslError("AUTH line error")
            if ev is core.NEED_DATA:
                data = await self._read()
                if not data:
                    raise ConnectionError("closed during AUTH")
                self.core.receive_data(data)
                continue
            raise sasl.SaslError("unexpected event during AUTH")

    async def _open_maildrop(self, account: Account, how: str) -> None:
        """Lock and snapshot the INBOX, then enter TRANSACTION (RFC 1939 §4)."""
        try:
            mailbox = await self.svc.store.get_mailbox(account.id, "INBOX")
            if mailbox is None:
                mailbox = await self.svc.store.create_mailbox(account.id, "INBOX")
        except StoreError:
            self.log.exception("cannot open INBOX of %s", account.address)
            await self.write(TEMP_FAILURE)
            return
        lease = self.locks.try_acquire(mailbox.id)
        if lease is None:
            self.log.info("%s: maildrop in use", account.address)
            await self.write(IN_USE)
            return
        try:
            maildrop = await Maildrop.open(self.svc.store, mailbox)
        except BaseException:
            lease.release()
            raise
        self.lease = lease
        self.account = account
        self.maildrop = maildrop
        self.core.authenticated()
        self.log.info("authenticated as %s via %s; %d messages", account.address, how, len(maildrop))
        await self.write(ok(f"Logged in, {len(maildrop)} messages"))

    # ---------------------------------------------------------------- TRANSACTION
    def _md(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    async def on_stat(self, ev: core.Stat) -> None:
        md = self._md()
        sizes = await md.sizes(md.live())
        await self.reply(ok(f"{len(sizes)} {sum(sizes.values())}"))  # RFC 1939 §5: "+OK nn mm"

    async def on_list(self, ev: core.List) -> None:
        md = self._md()
        if ev.msg is not None:
            if not md.exists(ev.msg):
                await self.reply(NO_SUCH_MESSAGE)
                return
            await self.reply(ok(f"{ev.msg} {await md.size(ev.msg)}"))
            return
        sizes = await md.sizes(md.live())
        lines = [f"{n} {s}".encode("ascii") for n, s in sizes.items()]
        await self.reply(core.multiline(f"{len(sizes)} messages ({sum(sizes.values())} octets)", lines))

    async def on_uidl(self, ev: core.Uidl) -> None:
        md = self._md()
        if ev.msg is not None:
            if not md.exists(ev.msg):
                await self.reply(NO_SUCH_MESSAGE)
                return
            await self.reply(ok(f"{ev.msg} {md.uidl(ev.msg)}"))
            return
        lines = [f"{n} {md.uidl(n)}".encode("ascii") for n in md.live()]
        await self.reply(core.multiline("Unique-ID listing follows", lines))

    async def _send_body(self, first_line: bytes, body: bytes) -> None:
        if len(body) <= WRITE_WHOLE_LIMIT:
            await self.reply(first_line)
            await self.reply(core.dot_stuff(body))
            return
        await self.reply(first_line)
        await self.flush()
        chunks = (body[i : i + WRITE_CHUNK] for i in range(0, len(body), WRITE_CHUNK))
        for piece in core.dot_stuff_stream(chunks):
            self.writer.write(piece)
            await self.writer.drain()

    async def on_retr(self, ev: core.Retr) -> None:
        md = self._md()
        if not md.exists(ev.msg):
            await self.reply(NO_SUCH_MESSAGE)
            return
        try:
            data = await md.read(ev.msg)
        except Vanished:
            await self.reply(VANISHED)
            return
        md.retrieved.add(ev.msg)
        await self._send_body(ok(f"{await md.size(ev.msg)} octets"), data)

    async def on_top(self, ev: core.Top) -> None:
        md = self._md()
        if not md.exists(ev.msg):
            await self.reply(NO_SUCH_MESSAGE)
            return
        try:
            data = await md.read(ev.msg)
        except Vanished:
            await self.reply(VANISHED)
            return
        await self._send_body(ok("Top of message follows"), top(data, ev.lines))

    async def on_dele(self, ev: core.Dele) -> None:
        md = self._md()
        if not md.exists(ev.msg):
            # RFC 1939 §5: an already deleted message may not be deleted again
            await self.reply(err("Message already deleted") if ev.msg in md.deleted else NO_SUCH_MESSAGE)
            return
        md.deleted.add(ev.msg)
        await self.reply(ok(f"Message {ev.msg} deleted"))

    async def on_noop(self, ev: core.Noop) -> None:
        await self.reply(ok())

    async def on_rset(self, ev: core.Rset) -> None:
        md = self._md()
        md.deleted.clear()  # RFC 1939 §5: unmark all
        sizes = await md.sizes(md.live())
        await self.reply(ok(f"Maildrop has {len(sizes)} messages ({sum(sizes.values())} octets)"))

    async def on_quit(self, ev: core.Quit) -> None:
        self.closing = True
        if self.core.state is not core.Pop3State.TRANSACTION:
            await self.reply(ok(f"{IMPLEMENTATION} POP3 server signing off"))  # RFC 1939 §4
            return
        md = self._md()
        self.core.quit_to_update()  # RFC 1939 §6: UPDATE state
        try:
            removed = await md.commit()
        except Exception:
            self.log.exception("UPDATE failed for %s", self.account.address if self.account else "?")
            self._unlock()
            await self.reply(err("Some deleted messages not removed", ResponseCode.SYS_TEMP))  # RFC 1939 §6
            return
        self._unlock()
        left = len(md) - len(md.deleted)
        self.log.info("logout: %d removed, %d left", removed, left)
        await self.reply(ok(f"{IMPLEMENTATION} POP3 server signing off ({left} messages left)"))

    async def on_command_error(self, ev: core.CommandError) -> None:
        await self.reply(ev.reply)

    async def on_stray(self, ev: Any) -> None:
        await self.reply(err("Unexpected SASL response"))  # only inside AUTH; never reached otherwise

    COMMANDS: dict[type, Callable[[Pop3Session, Any], Awaitable[None]]] = {
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


async def listen(svc: Services, name: str, host: str, port: int) -> asyncio.base_events.Server:
    locks: MaildropLocks = FileMaildropLocks(svc.cfg.data_dir / "locks")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            svc.track(task)
        await Pop3Session(svc, name, locks, reader, writer).run()

    ssl_ctx = svc.tls if name == "pop3s" else None  # RFC 8314 §3.3: implicit TLS
    return await asyncio.start_server(
        on_connect,
        host,
        port,
        ssl=ssl_ctx,
        reuse_port=app.reuse_port(),
        family=socket.AF_INET6 if ":" in host else socket.AF_INET,
        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if ssl_ctx else None,
        limit=READ_SIZE,
    )
