"""One client connection for every protocol adapter: an ``asyncio.Protocol`` with a byte pipe on top.

The shape is the one the POP3 server proved fastest (no streams layer, no task per read): the
transport calls :class:`Connection` directly, and an adapter consumes the bytes in one of two ways:

* **pull** (SMTP, IMAP, coroutine sessions): ``await conn.read(timeout)`` returns what arrived;
* **push** (POP3, callback sessions): ``conn.set_handler(h)`` makes the connection call
  ``h.on_data(bytes)`` as the transport delivers, plus ``on_eof``, ``on_lost`` and ``on_writable``.

Output goes through :meth:`Connection.write` / :meth:`Connection.writelines` (never blocking) and
:meth:`Connection.drain` (wait until the client took the output below ``Limits.write_high_water``).
The connection also does the STARTTLS upgrade, COMPRESS=DEFLATE and peer/TLS information.

RFCs: RFC 3207 §4.2 (SMTP STARTTLS), RFC 2595 §3.1/§4 (POP3 STLS), RFC 9051 §6.2.1 (IMAP
STARTTLS): after the upgrade the protocol starts over and nothing received before it is used —
CVE-2011-0411; RFC 8314 §3.3 (implicit TLS, see ``listener``); RFC 4978 (COMPRESS=DEFLATE:
raw deflate, RFC 1951, both directions, a sync flush after every write).

Invariants
----------
* **Bytes after STARTTLS are discarded**: :meth:`start_tls` pauses reading before the go-ahead reply
  is written, so the ClientHello waits in the socket for the TLS layer, and drops every plaintext
  octet still buffered here (returning the count; the adapter drops its core's buffer too).
* **Memory per connection is bounded by the limits**: unparsed input above
  ``Limits.max_buffered_input`` pauses reading (TCP pushes back on the client); output above
  ``Limits.write_high_water`` (``tls_write_high_water`` over TLS) makes :meth:`drain` wait, at
  most ``Limits.write_stall_timeout`` seconds, then the connection is aborted
  (:class:`WriteStalled`); inflated input is produced at most ``Limits.max_inflate`` octets per read.
* **Never write to a socket while holding an account lock**: writes here never wait, but
  :meth:`drain` does, for as long as the client likes up to the stall timeout; adapters release
  store locks before they drain (POP3 releases the maildrop lock before its final ``+OK``).
* One reader at a time: a pull-mode session has at most one :meth:`read` outstanding.
* **Deadlines, not idle timers** (issue 12 item 6): :meth:`Connection.wait_time` gives the
  seconds a session may wait for input: the idle timer (``Limits.stress_timeout`` while
  :data:`LOAD` is stressed), never beyond the caller's absolute per-command deadline, the end of
  the session (``Limits.session_timeout`` from ``connection_made``) nor, before login, the end
  of the login phase (``Limits.preauth_timeout`` from ``connection_made``, as Dovecot's login
  processes); it raises TimeoutError once one of those has passed, so input that keeps coming
  cannot extend a session past its deadline.
* **Connection limits** (issue 12 item 5, ``connlimits``): with a gate, ``connection_made`` asks
  it first; a refused client gets the adapter's refusal line (``421 4.7.0``, ``* BYE
  [UNAVAILABLE]``, ``-ERR [SYS/TEMP]``) and the connection is closed, no session runs. What
  the connection was admitted with (and a login, :meth:`admit_login`) is released exactly once,
  in ``connection_lost``.
* **Read budget** (issue 12 item 1): :meth:`read` hands a session at most ``Limits.read_budget``
  octets at a time, and once a session has been handed that much (or run
  ``Limits.commands_per_turn`` commands, counted by :meth:`pace`) without waiting for input, the
  next read yields one loop turn first, so one client streaming bytes or pipelining commands
  cannot monopolise the loop. Flow control is unchanged: reading pauses above
  ``max_buffered_input`` and resumes once the buffer is back under it.
* **Stress** (Postfix ``stress``): :data:`LOAD` counts this process's open connections; above
  ``Limits.stress_ratio`` × ``Limits.connection_budget`` the timers shorten; entering and
  leaving stress are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, cast

from mailhouse.runtime.connlimits import Admission, ConnectionGate, Refusal
from mailhouse.runtime.limits import Limits

log = logging.getLogger(__name__)

#: Seconds :meth:`Connection.close` waits for the transport to flush and close.
CLOSE_WAIT = 2.0
#: Listener kinds counted together after login (Dovecot counts per protocol, not per port).
FAMILY: Mapping[str, str] = {"imaps": "imap", "pop3s": "pop3", "submissions": "submission"}


class ProcessLoad:
    """This process's open connections, and whether they put it under stress (Postfix ``stress``)."""

    def __init__(self) -> None:
        self.active = 0
        self.stressed = False

    def opened(self, limits: Limits) -> None:
        self.active += 1
        self._update(limits)

    def closed(self, limits: Limits) -> None:
        self.active -= 1
        self._update(limits)

    def _update(self, limits: Limits) -> None:
        stressed = self.active > limits.connection_budget * limits.stress_ratio
        if stressed != self.stressed:
            self.stressed = stressed
            if stressed:
                log.warning(
                    "entering stress: %d connections (budget %d); timers shortened to %gs",
                    self.active,
                    limits.connection_budget,
                    limits.stress_timeout,
                )
            else:
                log.warning(
                    "leaving stress: %d connections (budget %d)", self.active, limits.connection_budget
                )


#: The per-process connection count every :class:`Connection` updates.
LOAD = ProcessLoad()


class WriteStalled(ConnectionError):
    """The client stopped reading for longer than ``Limits.write_stall_timeout``: connection aborted."""


class DataHandler(Protocol):
    """What a push-mode session implements (see :meth:`Connection.set_handler`)."""

    def on_data(self, data: bytes) -> None: ...

    def on_eof(self) -> None: ...

    def on_lost(self, exc: Exception | None) -> None: ...

    def on_writable(self) -> None: ...


#: What a listener runs for each connection: called in ``connection_made`` (its synchronous part
#: runs at once), the awaitable it returns is the session task the node tracks for draining.
Opener = Callable[["Connection"], Awaitable[None]]


class Connection(asyncio.Protocol):
    """One client connection (plain, TLS, optionally deflate-compressed); see the module docstring."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        limits: Limits,
        on_open: Opener | None = None,
        track: Callable[[asyncio.Task[None]], None] | None = None,
        *,
        gate: ConnectionGate | None = None,
        service: str = "",
        refusals: Mapping[Refusal, bytes] | None = None,
    ) -> None:
        self.limits = limits
        self._gate = gate
        self.service = service  # the [listen] key this connection came in on
        self._refusals = refusals or {}
        self._admission: Admission | None = None
        self._login: Admission | None = None
        self._on_open = on_open
        self._track = track
        self.tls = False
        self.peer: tuple[str, int] = ("?", 0)
        self.session_task: asyncio.Task[None] | None = None
        self._buf = bytearray()  # input not yet read (raw: compressed when COMPRESS is on)
        self._handler: DataHandler | None = None
        self._waiter: asyncio.Future[None] | None = None  # a read() waits for input
        self._drainers: list[asyncio.Future[None]] = []  # drain() calls wait for resume_writing
        self._closed: asyncio.Future[None] | None = None
        self._eof = False
        self._lost = False
        self._exc: Exception | None = None
        self._read_paused = False  # paused by flow control (ours or the handler's)
        #: The transport holds more than the write high-water mark (a plain attribute: the POP3
        #: pump reads it once per command)
        self.writing_paused = False
        self._tls_starting = False  # start_tls runs: arriving bytes are TLS application data
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None
        self.started = 0.0  # loop time of connection_made: the session cap counts from it
        # input octets and commands handed to the session since it last yielded (read budget)
        self._turn_bytes = 0
        self._turn_commands = 0
        self._counted = False

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer = (str(peer[0]), int(peer[1]))
        if self._gate is not None:
            got = self._gate.admit(self.service, self.peer[0])
            if isinstance(got, Refusal):
                self._refuse(got)
                return
            self._admission = got
        LOAD.opened(self.limits)
        self._counted = True
        self._closed = self.loop.create_future()
        self.tls = transport.get_extra_info("sslcontext") is not None  # implicit TLS: from the first byte
        self._set_write_limit()
        if self._on_open is not None:
            task = self.loop.create_task(self._run(self._on_open(self)))
            self.session_task = task
            if self._track is not None:
                self._track(task)

    def _refuse(self, why: Refusal) -> None:
        """Answer the adapter's refusal line and close: no session, nothing counted."""
        if self._gate is not None:
            self._gate.note_refusal(f"{self.service} connection", self.peer[0], why)
        self._lost = True  # no session will read or write; connection_lost only releases
        line = self._refusals.get(why)
        if line:
            self.transport.write(line)
        self.transport.close()

    def admit_login(self, account: str) -> Refusal | None:
        """ACCOUNT (an id) logged in on this connection: count it against the per-account limits.

        Returns the refusal when over them (the adapter answers it and stays unauthenticated);
        a second login on the same connection replaces the first (RFC 8437 UNAUTHENTICATE).
        """
        self.release_login()
        if self._gate is None:
            return None
        got = self._gate.admit_login(FAMILY.get(self.service, self.service), account, self.peer[0])
        if isinstance(got, Refusal):
            return got  # the adapter answers and logs it
        self._login = got
        return None

    def release_login(self) -> None:
        """The session logged out (UNAUTHENTICATE): its login no longer counts."""
        login, self._login = self._login, None
        if login is not None:
            login.release()

    def _set_write_limit(self) -> None:
        lim = self.limits
        high = lim.tls_write_high_water if self.tls else lim.write_high_water
        if self.transport.get_write_buffer_limits()[1] != high:  # keep the loop's own low-water mark
            self.transport.set_write_buffer_limits(high=high)

    async def _run(self, session: Awaitable[None]) -> None:
        try:
            await session
        except asyncio.CancelledError:
            self.abort()  # the node gave up draining: drop the connection now
            raise
        except Exception:
            log.exception("session of %s failed", self.peer[0])
            self.abort()
        finally:
            if not self._lost and not self.transport.is_closing():
                self.transport.close()  # a session that forgot to close does not leak the socket

    def data_received(self, data: bytes) -> None:
        h = self._handler
        if h is not None and not self._tls_starting:
            h.on_data(data)
            return
        self._buf += data
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if len(self._buf) > self.limits.max_buffered_input and not self._tls_starting:
            self.pause_reading()  # idempotent; the client waits until the session caught up

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        if self._handler is not None:
            self._handler.on_eof()
        # keep our side open: replies to what was received still go out (a pipelined QUIT);
        # with TLS the transport closes anyway, and returning True there only logs a warning
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.release_login()
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.release()
        if self._closed is None:  # refused in connection_made: nothing else was set up
            return
        if self._counted:
            self._counted = False
            LOAD.closed(self.limits)
        self._lost = True
        self._exc = exc
        self._wake()
        for d in self._drainers:
            if not d.done():
                d.set_result(None)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._handler is not None:
            self._handler.on_lost(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        for d in self._drainers:
            if not d.done():
                d.set_result(None)
        if self._handler is not None:
            self._handler.on_writable()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ---------------------------------------------------------------- information
    @property
    def peer_ip(self) -> str:
        return self.peer[0]

    @property
    def lost(self) -> bool:
        """The transport is gone (connection_lost seen)."""
        return self._lost

    @property
    def at_eof(self) -> bool:
        """The client closed its side (or the connection is gone)."""
        return self._eof or self._lost

    @property
    def compressed(self) -> bool:
        return self._deflate is not None

    @property
    def buffered(self) -> int:
        """Input octets received and not read yet."""
        return len(self._buf)

    def tls_info(self) -> tuple[str, str] | None:
        """(TLS version, cipher name) once TLS is on; None in plaintext."""
        obj = self.transport.get_extra_info("ssl_object")
        if obj is None:
            return None
        cipher = obj.cipher()
        return (str(obj.version()), str(cipher[0]) if cipher else "?")

    # ---------------------------------------------------------------- timers
    @property
    def stressed(self) -> bool:
        """The process is under stress: timers are shortened to ``Limits.stress_timeout``."""
        return LOAD.stressed

    def idle_limit(self, *, preauth: bool = False) -> float:
        """The idle timer now: at most ``preauth_timeout`` before login, ``stress_timeout`` under stress."""
        lim = self.limits
        wait = min(lim.idle_timeout, lim.preauth_timeout) if preauth else lim.idle_timeout
        if LOAD.stressed:
            wait = min(wait, lim.stress_timeout)  # Postfix smtpd_timeout ${stress?{10}:{300}}
        return wait

    def _ends(self, preauth: bool, capped: bool) -> list[float]:
        lim = self.limits
        ends = []
        if capped and lim.session_timeout is not None:
            ends.append(self.started + lim.session_timeout)
        if preauth:  # Dovecot's login processes: 3 minutes from the connection to log in, input or not
            ends.append(self.started + lim.preauth_timeout)
        return ends

    def session_expired(self, *, preauth: bool = False, capped: bool = True) -> bool:
        """The session cap (``Limits.session_timeout``) or, before login, ``preauth_timeout`` passed."""
        now = self.loop.time()
        return any(now >= end for end in self._ends(preauth, capped))

    def wait_time(
        self, *, preauth: bool = False, capped: bool = True, deadline: float | None = None
    ) -> float:
        """Seconds the session may wait for the next input (see the module docstring).

        PREAUTH: before login (shorter idle timer; the pre-login phase ends ``preauth_timeout``
        after the connection was made); CAPPED applies the session cap ``Limits.session_timeout``;
        DEADLINE is an absolute loop time (a per-command deadline). Raises TimeoutError when one
        of those has passed already.
        """
        wait = self.idle_limit(preauth=preauth)
        now = self.loop.time()
        ends = self._ends(preauth, capped)
        if deadline is not None:
            ends.append(deadline)
        for end in ends:
            if end - now <= 0:
                raise TimeoutError("deadline passed")
            wait = min(wait, end - now)
        return wait

    # ---------------------------------------------------------------- input
    def set_handler(self, handler: DataHandler | None) -> None:
        """Switch to push mode: HANDLER gets the input; what was buffered is handed over first."""
        self._handler = handler
        if handler is not None and self._buf and not self._tls_starting:
            handler.on_data(self.take_buffered())

    def take_buffered(self) -> bytes:
        """Remove and return the input buffered here (raw octets)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def pause_reading(self) -> None:
        """Flow control: stop reading from the socket (idempotent)."""
        if not self._read_paused and not self._lost:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Undo :meth:`pause_reading` (idempotent)."""
        if self._read_paused:
            self._read_paused = False
            if not self._lost and not self._tls_starting:
                self.transport.resume_reading()

    async def read(self, timeout: float | None = None) -> bytes:
        """The next input octets (inflated when COMPRESS is on); ``b""`` at EOF.

        Raises TimeoutError when nothing arrives within TIMEOUT seconds (the idle timeout; None
        waits for ever), and the transport's error when the connection broke. Cancelling a read
        loses no input.
        """
        if self._inflate is not None:
            return await self._read_inflated(timeout)
        if not self._buf:
            await self._wait_data(timeout)
            if not self._buf:
                return self._at_end()
        elif self._turn_bytes >= self.limits.read_budget:
            await self._yield_turn()
        return self._take(self.limits.read_budget)

    def _take(self, limit: int) -> bytes:
        """At most LIMIT buffered octets; reading resumes once the buffer is below its cap."""
        buf = self._buf
        if len(buf) <= limit:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:limit])
            del buf[:limit]
        self._turn_bytes += len(data)
        if self._read_paused and len(buf) <= self.limits.max_buffered_input:
            self.resume_reading()
        return data

    async def _yield_turn(self) -> None:
        """Let the other connections have a loop turn (issue 12 item 1: the read budget)."""
        self._turn_bytes = self._turn_commands = 0
        await asyncio.sleep(0)

    async def pace(self) -> None:
        """Count one command; after ``Limits.commands_per_turn`` of them without a wait for input,
        yield one loop turn, so a client pipelining cheap commands cannot hold the loop."""
        self._turn_commands += 1
        if self._turn_commands >= self.limits.commands_per_turn:
            await self._yield_turn()

    def _at_end(self) -> bytes:
        exc = self._exc
        if exc is None:
            return b""
        if isinstance(exc, ConnectionError | ssl.SSLError):
            raise exc  # (a TimeoutError here is the socket's, not our idle timeout: wrapped below)
        raise ConnectionResetError(str(exc)) from exc

    async def _wait_data(self, timeout: float | None) -> None:
        if self._eof or self._lost:
            return
        self._turn_bytes = self._turn_commands = 0  # waiting for input gives the turn away
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._waiter = waiter
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):  # no task per read, unlike wait_for
                    await waiter
        finally:
            self._waiter = None

    async def _read_inflated(self, timeout: float | None) -> bytes:
        d = self._inflate
        assert d is not None
        limit = self.limits.max_inflate
        while True:
            if d.unconsumed_tail:
                out = d.decompress(d.unconsumed_tail, limit)
                if out:
                    return out
            if not self._buf:
                if self._eof or self._lost:
                    return self._at_end()
                await self._wait_data(timeout)
                continue
            if self._turn_bytes >= self.limits.read_budget:
                await self._yield_turn()
            raw = self._take(self.limits.read_budget)
            try:
                out = d.decompress(raw, limit)  # RFC 4978 §3; bounded per read (a deflate bomb)
            except zlib.error as e:
                raise ConnectionError(f"bad deflate stream: {e}") from None
            if d.eof:
                raise ConnectionError("client ended the deflate stream")
            if out:
                return out

    # ---------------------------------------------------------------- output
    def write(self, data: bytes) -> None:
        """Queue DATA on the transport (compressed when COMPRESS is on); never waits."""
        c = self._deflate
        if c is not None:
            data = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)  # RFC 4978 §3: flush per write
        if not self._lost and not self.transport.is_closing():
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        """Queue several buffers with one call (one system call when the socket takes them)."""
        if self._deflate is not None:
            self.write(b"".join(parts))
        elif not self._lost and not self.transport.is_closing():
            if len(parts) == 1:
                self.transport.write(parts[0])
            else:
                self.transport.writelines(parts)

    async def drain(self) -> None:
        """Wait until the output is below the high-water mark; abort a client that stalls.

        Raises ConnectionResetError when the connection is gone and :class:`WriteStalled` after
        ``Limits.write_stall_timeout`` seconds without progress.
        """
        if self.writing_paused and not self._lost:
            try:
                async with asyncio.timeout(self.limits.write_stall_timeout):
                    while self.writing_paused and not self._lost:
                        d: asyncio.Future[None] = self.loop.create_future()
                        self._drainers.append(d)
                        try:
                            await d
                        finally:
                            self._drainers.remove(d)
            except TimeoutError:
                self.abort()
                raise WriteStalled("client stopped reading") from None
        if self._lost:
            raise ConnectionResetError("connection lost")

    async def send(self, data: bytes) -> None:
        """:meth:`write` then :meth:`drain`."""
        self.write(data)
        await self.drain()

    # ---------------------------------------------------------------- upgrades
    async def start_tls(self, reply: bytes, ctx: ssl.SSLContext, timeout: float | None = None) -> int:
        """Write REPLY (the go-ahead of STARTTLS/STLS) and switch to TLS as the server.

        Returns the number of plaintext octets the client pipelined after the command that were
        still buffered here: they are discarded, never read (RFC 3207 §4.2, RFC 2595 §3.1,
        RFC 9051 §6.2.1; CVE-2011-0411). Raises on handshake failure or after TIMEOUT seconds
        (default ``Limits.tls_handshake_timeout``); the connection is aborted then.
        """
        if timeout is None:
            timeout = self.limits.tls_handshake_timeout
        # RFC 3207 §4.2: pause before the reply, so the ClientHello stays in the socket for the
        # TLS layer; loop.start_tls resumes reading under TLS
        self.transport.pause_reading()
        discarded = len(self._buf)
        self._buf.clear()
        self._tls_starting = True
        self.write(reply)
        try:
            new = await asyncio.wait_for(
                self.loop.start_tls(
                    self.transport, self, ctx, server_side=True, ssl_handshake_timeout=timeout
                ),
                timeout + 5,
            )
        except BaseException:
            self._tls_starting = False
            self.abort()
            raise
        self._tls_starting = False
        if new is None:  # the connection went away during the handshake
            raise ConnectionResetError("connection lost during the TLS handshake")
        self.transport = new
        self.tls = True
        self._set_write_limit()
        self._read_paused = False
        self.writing_paused = False
        # what arrived since is TLS application data: pull mode reads it next, push mode takes it
        # with take_buffered() after resetting its core
        return discarded

    def start_compress(self, already_received: bytes) -> None:
        """Turn on COMPRESS=DEFLATE (RFC 4978 §3: raw deflate, both directions, from now on).

        ALREADY_RECEIVED are octets the client sent after the command that the session's core
        had buffered: they are compressed data and are inflated first.
        """
        self._inflate = zlib.decompressobj(-15)
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._buf[:0] = already_received

    # ---------------------------------------------------------------- closing
    def abort(self) -> None:
        """Drop the connection now, discarding unsent output."""
        if not self._lost:
            self.transport.abort()

    def close_nowait(self) -> None:
        """Close after the buffered output was sent, without waiting."""
        if not self._lost:
            self.transport.close()

    async def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Close after the buffered output was sent; wait at most TIMEOUT seconds for it."""
        if not self._lost:
            self.transport.close()
        if self._closed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), timeout)
            if not self._lost:
                self.transport.abort()

    def __repr__(self) -> str:
        return f"<Connection {self.peer[0]}:{self.peer[1]} tls={self.tls}>"


__all__ = ["CLOSE_WAIT", "LOAD", "Connection", "DataHandler", "Opener", "ProcessLoad", "WriteStalled"]
