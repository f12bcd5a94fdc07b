"""Outbound SMTP client (the MTA's sending side): one asyncio connection per remote host.

Built on the sans-IO client core `proto.smtp_client`, not on aiosmtplib, because the
core already owns the rules the issue asks for and aiosmtplib does not offer them:
dot-stuffing after normalising bare CR and bare LF to CRLF (so "\\r.\\r\\n" can never
end DATA early — CVE-2023-51764 / CVE-2026-33604 class), BDAT framing (RFC 3030),
reply line/size caps, and the byte count needed to detect plaintext injected before
the TLS handshake (RFC 3207 §4.2, CVE-2011-0411 towards the client). aiosmtplib has no
CHUNKING and does not let us check its read buffer across STARTTLS.

RFCs: RFC 5321 (§4.5.3.2 timeouts, §3.9/§4.5.4 per-recipient replies), RFC 2920
(PIPELINING), RFC 3030 (CHUNKING/BDAT), RFC 3207 (STARTTLS), RFC 4954 (AUTH PLAIN/LOGIN
to smarthosts), RFC 3461 (DSN parameters outbound), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8).

Invariants:
- Every reply is read through the core; a malformed or oversized reply, or any byte
  received after the `220` to STARTTLS and before the TLS handshake, closes the
  connection (`ProtocolViolation`) — nothing is ever acted upon.
- A password is sent only over TLS whose certificate chain and host name were verified
  (route `tls = "required"` or `"implicit"`), unless the route says
  `auth_over_unverified = true` (issue 15 item 1: anyone on the path could take it).
- DANE (RFC 7672): with TLSA records given (`tls_mode = "dane"`), STARTTLS is mandatory, SNI is
  the MX host name, and the presented chain must satisfy a record (`smtpclient.dane`) before
  any command is sent over TLS; every failure is `DaneFailed` (451 4.7.5, no cleartext fallback).
- Route TLS modes: "required"/"implicit" verify (a failed verification is `TlsVerifyFailed`,
  451 4.7.5, never a fallback), "encrypt" insists on STARTTLS without verifying,
  "opportunistic" uses STARTTLS when offered (RFC 7435), "none" stays in plaintext.
- `send()` never raises for per-recipient results: each recipient gets its own reply;
  it raises `SmtpError` only when the whole transaction failed (connection lost,
  MAIL refused...), and then `.reply`/`.permanent` say what to record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailhouse.proto.smtp import NeedData
from mailhouse.proto.smtp_client import ReplyProtocolError, ServerReply, SMTPClientProtocol
from mailhouse.smtpclient.dane import DaneMismatch, Failure, Tlsa, check_chain, peer_chain

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
CONNECT_TIMEOUT = 30.0  # Postfix smtp_connect_timeout = 30s
# RFC 5321 §4.5.3.2: greeting 5 min, MAIL 5 min, RCPT 5 min, DATA 2 min, block 3 min, "." 10 min
GREETING_TIMEOUT = 300.0
COMMAND_TIMEOUT = 300.0
DATA_INIT_TIMEOUT = 120.0
DATA_BLOCK_TIMEOUT = 180.0
DATA_END_TIMEOUT = 600.0
TLS_TIMEOUT = 30.0  # Postfix smtp_starttls_timeout is 300s; a healthy handshake takes milliseconds
BDAT_CHUNK = 1024 * 1024  # RFC 3030 leaves chunk size to the client; 1 MiB bounds memory per write
# Up to this size the BDAT chunk goes in the same pipelined group as MAIL and RCPT; a larger
# message waits for the RCPT replies, so a refused one is not sent for nothing
PIPELINED_BDAT_MAX = 128 * 1024


class SmtpError(Exception):
    """The transaction (or the connection) failed as a whole."""

    def __init__(self, reply: str, permanent: bool = False, connection_ok: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.connection_ok = connection_ok  # the session may be reused (RSET) after this


class StaleConnection(SmtpError):
    """A cached connection died before answering the RSET that opened a pipelined group:
    the server acted on none of it, so the transaction may be retried on a new connection."""


class TlsHandshakeFailed(SmtpError):
    """STARTTLS was offered and accepted but the handshake failed (opportunistic: retry in clear)."""


class TlsVerifyFailed(SmtpError):
    """The server's certificate did not verify (chain or host name) where verification is
    required: the message is deferred with 4.7.5 and nothing (no AUTH, no mail) is sent."""


class DaneFailed(TlsVerifyFailed):
    """A DANE-protected session could not be secured (RFC 7672 §2.2: defer, never cleartext);
    FAILURE is the RFC 8460 result type for a TLS-RPT report."""

    def __init__(self, failure: Failure, host: str, detail: str) -> None:
        super().__init__(f"451 4.7.5 DANE verification failed for {host}: {detail}")
        self.failure = failure


def verifies(ctx: ssl.SSLContext) -> bool:
    return ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def _verify_error(host: str, e: ssl.SSLCertVerificationError) -> TlsVerifyFailed:
    why = e.verify_message or e.reason or type(e).__name__
    return TlsVerifyFailed(f"451 4.7.5 certificate verification failed for {host}: {why}")


class ProtocolViolation(SmtpError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"451 4.5.0 protocol violation by remote server: {reason}", permanent=False)


def reply_text(r: ServerReply) -> str:
    """`550 5.1.1 text` — one line, as logged and put in DSNs."""
    text = " ".join(t.strip() for t in r.lines)
    return f"{r.code} {r.enhanced + ' ' if r.enhanced else ''}{text}".strip()


def xtext(value: str) -> str:
    """RFC 3461 §4: xtext-encode '+', '=' and anything outside 33..126."""
    out = []
    for b in value.encode("utf-8"):
        out.append(chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}")
    return "".join(out)


def normalise_newlines(data: bytes) -> bytes:
    """Bare CR and bare LF → CRLF (RFC 5321 §2.3.8), as the DATA encoder does, for BDAT."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class RcptReply:
    address: str
    code: int
    text: str  # "250 2.1.5 Ok" etc.

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class SmtpConnection:
    """An open, greeted (and possibly TLS, authenticated) session with one server."""

    def __init__(self, host: str, address: str, port: int, source: str | None = None) -> None:
        self.host = host  # name (SNI, Remote-MTA)
        self.address = address
        self.port = port
        self.source = (
            source  # local address to send from (Postfix smtp_bind_address), None = the kernel's choice
        )
        self.core = SMTPClientProtocol()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.tls = False
        self.verified = False  # TLS with the chain and host name verified (PKIX or DANE)
        self.dane_match: Tlsa | None = None  # the TLSA record the server's chain satisfied
        self.closed = False
        self.messages_sent = 0
        self.key: tuple[object, ...] = ()  # ConnectionPool cache key
        # a reused connection still owes an RSET (the liveness check); with PIPELINING it
        # opens the next transaction's group instead of costing a round trip of its own
        self.rset_pending = False

    @property
    def ext(self) -> dict[str, str | None]:
        return self.core.extensions

    # ------------------------------------------------------------ plumbing
    async def _write(self, data: bytes) -> None:
        assert self.writer is not None
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError, OSError) as e:
            await self.abort()
            raise SmtpError(f"451 4.4.2 connection lost: {type(e).__name__}") from None

    async def _reply(self, timeout: float = COMMAND_TIMEOUT) -> ServerReply:
        assert self.reader is not None
        while True:
            ev = self.core.next_event()
            if isinstance(ev, ServerReply):
                return ev
            if isinstance(ev, ReplyProtocolError):
                await self.abort()
                raise ProtocolViolation(ev.reason)
            assert isinstance(ev, NeedData)
            if self.core.waiting_for_tls:
                await self.abort()
                raise ProtocolViolation("reply expected while waiting for the TLS handshake")
            try:
                async with asyncio.timeout(timeout):  # no task per read, unlike wait_for
                    data = await self.reader.read(READ_SIZE)
            except TimeoutError:
                await self.abort()
                raise SmtpError("451 4.4.2 timeout waiting for the remote server") from None
            except (ConnectionError, ssl.SSLError, OSError) as e:
                await self.abort()
                raise SmtpError(f"451 4.4.2 connection lost: {type(e).__name__}") from None
            if not data:
                await self.abort()
                raise SmtpError("451 4.4.2 connection closed by the remote server")
            self.core.receive_data(data)

    async def abort(self) -> None:
        self.closed = True
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2.0)
            except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
                pass

    # ------------------------------------------------------------ session set-up
    async def open(
        self,
        helo: str,
        *,
        tls_mode: str = "opportunistic",
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        try_starttls: bool = True,
        auth_over_unverified: bool = False,
        tlsa: Sequence[Tlsa] = (),
        dane_names: Sequence[str] = (),
    ) -> None:
        """Connect, greet, STARTTLS per TLS_MODE, AUTH. TRY_STARTTLS=False is the plaintext
        retry after a failed opportunistic handshake (RFC 7435 §4; Postfix does the same).
        TLS_MODE "dane" checks the server's chain against TLSA (the usable records of the MX);
        DANE_NAMES are the reference identifiers of a DANE-TA match (default: the host name)."""
        implicit = tls_mode == "implicit"
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.address,
                    self.port,
                    limit=READ_SIZE,
                    ssl=tls_context if implicit else None,
                    server_hostname=self.host if implicit else None,
                    local_addr=(self.source, 0) if self.source else None,
                ),
                connect_timeout,
            )
        except ssl.SSLCertVerificationError as e:
            raise _verify_error(self.host, e) from None
        except (TimeoutError, OSError) as e:
            raise SmtpError(
                f"451 4.4.1 connect to {self.host}[{self.address}]:{self.port} failed: {type(e).__name__}"
            ) from None
        self.tls = implicit
        self.verified = implicit and tls_context is not None and verifies(tls_context)
        self.core.tls_active = implicit
        greeting = await self._reply(GREETING_TIMEOUT)
        if greeting.code != 220:
            # RFC 5321 §3.1: 554 greeting → no service here; 4xx → try later
            await self.quit()
            raise SmtpError(reply_text(greeting), permanent=False)
        await self._ehlo(helo)
        if not self.tls and tls_mode in ("opportunistic", "required", "encrypt", "dane"):
            if "STARTTLS" in self.ext and (try_starttls or tls_mode != "opportunistic"):
                await self._starttls(
                    tls_context or ssl.create_default_context(),
                    tlsa if tls_mode == "dane" else (),
                    dane_names,
                )
                await self._ehlo(helo)
            elif tls_mode == "dane":
                # RFC 7672 §2.2: usable TLSA records → STARTTLS is mandatory
                await self.quit()
                raise DaneFailed(Failure.STARTTLS_NOT_SUPPORTED, self.host, "STARTTLS not offered")
            elif tls_mode != "opportunistic" or (username and not try_starttls):
                await self.quit()
                raise SmtpError("451 4.7.4 TLS required but not offered by the remote server")
        if username and not auth_over_unverified:
            # issue 15 item 1: credentials only where the server's identity was checked
            if not self.tls:
                await self.quit()
                raise SmtpError("451 4.7.4 refusing to send credentials without TLS")
            if not self.verified:
                await self.quit()
                raise SmtpError(
                    f"451 4.7.4 refusing to send credentials to {self.host} over unverified TLS"
                    ' (route tls = "required", or auth_over_unverified = true)'
                )
        if username:
            await self._auth(username, password or "")

    async def _ehlo(self, helo: str) -> None:
        await self._write(self.core.ehlo(helo))
        r = await self._reply()
        if r.code == 250:
            return
        await self._write(self.core.helo(helo))  # RFC 5321 §3.2: fall back to HELO
        r = await self._reply()
        if r.code != 250:
            await self.quit()
            raise SmtpError(reply_text(r), permanent=False)

    async def _starttls(
        self, ctx: ssl.SSLContext, tlsa: Sequence[Tlsa] = (), dane_names: Sequence[str] = ()
    ) -> None:
        assert self.reader is not None and self.writer is not None
        await self._write(self.core.starttls())
        r = await self._reply()
        if r.code != 220:
            await self.quit()
            raise SmtpError(reply_text(r), permanent=False)
        # RFC 3207 §4.2 (towards us): bytes received after the 220 and before the handshake
        # are a plaintext injection; both the core's and the stream's buffers must be empty.
        pending = self.core.bytes_buffered() + len(getattr(self.reader, "_buffer", b""))
        if pending:
            await self.abort()
            raise ProtocolViolation(f"{pending} octets sent before the TLS handshake (STARTTLS injection)")
        try:
            await asyncio.wait_for(
                self.writer.start_tls(ctx, server_hostname=self.host, ssl_handshake_timeout=TLS_TIMEOUT),
                TLS_TIMEOUT + 5,
            )
        except ssl.SSLCertVerificationError as e:
            await self.abort()
            raise _verify_error(self.host, e) from None
        except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as e:
            await self.abort()
            if tlsa:  # RFC 7672 §2.2: no fallback to cleartext
                raise DaneFailed(
                    Failure.VALIDATION_FAILURE, self.host, f"TLS handshake failed: {type(e).__name__}"
                ) from None
            raise TlsHandshakeFailed(
                f"451 4.7.5 TLS handshake with {self.host} failed: {type(e).__name__}"
            ) from None
        self.core.start_tls_done()
        self.tls = True
        self.verified = verifies(ctx)
        if tlsa:
            # RFC 7672 §3: the chain must satisfy a usable TLSA record before anything is sent
            ssl_object = self.writer.get_extra_info("ssl_object")
            try:
                chain = peer_chain(ssl_object) if ssl_object else []
                self.dane_match = check_chain(tlsa, chain, dane_names or (self.host,))
            except DaneMismatch as e:
                await self.abort()
                raise DaneFailed(e.failure, self.host, e.detail) from None
            self.verified = True

    async def _auth(self, username: str, password: str) -> None:
        mechs = (self.ext.get("AUTH") or "").upper().split()
        if "PLAIN" in mechs:
            # RFC 4616: authzid NUL authcid NUL passwd
            await self._write(self.core.auth("PLAIN", b"\0" + username.encode() + b"\0" + password.encode()))
            r = await self._reply()
        elif "LOGIN" in mechs:
            await self._write(self.core.auth("LOGIN"))
            r = await self._reply()
            for secret in (username, password):
                if r.code != 334:
                    break
                await self._write(self.core.auth_response(secret.encode()))
                r = await self._reply()
        else:
            await self.quit()
            raise SmtpError("451 4.7.0 remote server offers no AUTH mechanism we support")
        if r.code != 235:
            await self.quit()
            raise SmtpError(f"AUTH failed: {reply_text(r)}", permanent=r.code >= 500 and r.code != 535)

    # ------------------------------------------------------------ transactions
    def mail_params(
        self, message: bytes, ret: str, envid: str, smtputf8: bool, body: str = ""
    ) -> dict[str, str | None]:
        p: dict[str, str | None] = {}
        if "SIZE" in self.ext:
            p["SIZE"] = str(len(message))  # RFC 1870
        if body == "BINARYMIME" and "BINARYMIME" in self.ext and "CHUNKING" in self.ext:
            p["BODY"] = "BINARYMIME"
        elif "8BITMIME" in self.ext and not message.isascii():
            p["BODY"] = "8BITMIME"  # RFC 6152
        if smtputf8 and "SMTPUTF8" in self.ext:
            p["SMTPUTF8"] = None
        if "DSN" in self.ext:  # RFC 3461 §4.3, §4.4: only to a server that offers DSN
            if ret:
                p["RET"] = ret
            if envid:
                p["ENVID"] = xtext(envid)
        return p

    def rcpt_params(self, notify: str, orcpt: str) -> dict[str, str | None]:
        p: dict[str, str | None] = {}
        if "DSN" in self.ext:
            if notify:
                p["NOTIFY"] = notify  # RFC 3461 §4.1
            if orcpt:
                typ, _, addr = orcpt.partition(";")
                p["ORCPT"] = f"{typ or 'rfc822'};{xtext(addr)}"  # RFC 3461 §4.2
        return p

    async def send(
        self,
        sender: str,
        recipients: Sequence[tuple[str, Mapping[str, str | None]]],
        message: bytes,
        mail_params: Mapping[str, str | None] | None = None,
        body_type: str = "",
    ) -> list[RcptReply]:
        """One transaction. Returns one reply per recipient (the final one: for accepted
        recipients it is the reply to the end of data). Raises SmtpError when nothing
        could be done at all (MAIL refused, connection lost...)."""
        pipelining = "PIPELINING" in self.ext  # RFC 2920
        chunking = "CHUNKING" in self.ext  # RFC 3030
        if self.rset_pending and not pipelining:
            self.rset_pending = False
            try:
                await self.reset()
            except SmtpError as e:
                raise StaleConnection(e.reply) from None
        rset = self.rset_pending
        self.rset_pending = False
        prefix = self.core.rset() if rset else b""  # RFC 2920 §3.1: RSET may open a group
        mail_cmd = self.core.mail(sender, mail_params)
        rcpt_cmds = [self.core.rcpt(addr, params) for addr, params in recipients]
        results: list[RcptReply] = []
        bdat_rs: list[ServerReply] = []
        if pipelining:
            # RFC 2920 §3.1: MAIL, RCPTs and (with DATA) the DATA command in one group; with
            # CHUNKING the BDAT chunks join the group too (RFC 3030 §2 and its example
            # §4.2; a server consumes a refused chunk's octets, §2), so a whole
            # transaction is one write and one round trip
            assert self.writer is not None
            group = prefix + mail_cmd + b"".join(rcpt_cmds)
            chunks: list[bytes] = []
            if chunking and len(message) <= PIPELINED_BDAT_MAX:
                payload = message if body_type == "BINARYMIME" else normalise_newlines(message)
                pieces = [payload[i : i + BDAT_CHUNK] for i in range(0, len(payload), BDAT_CHUNK)] or [b""]
                chunks = [self.core.bdat(c, last=n == len(pieces) - 1) for n, c in enumerate(pieces)]
            elif not chunking:
                group += self.core.data()
            try:
                if chunks and len(chunks[0]) < 64 * 1024:
                    await self._write(group + chunks[0])  # one segment for the usual small message
                else:
                    self.writer.write(group)
                    for c in chunks:
                        self.writer.write(c)
                    await self._write(b"")
            except SmtpError as e:
                if rset:
                    raise StaleConnection(e.reply) from None
                raise
            if rset:
                try:
                    await self._reply(60.0)  # its code does not matter: the group's replies follow
                except SmtpError as e:
                    raise StaleConnection(e.reply) from None
            mail_r = await self._reply()
            rcpt_rs = [await self._reply() for _ in recipients]
            data_r = None if chunking else await self._reply(DATA_INIT_TIMEOUT)
            for n in range(len(chunks)):
                bdat_rs.append(
                    await self._reply(DATA_END_TIMEOUT if n == len(chunks) - 1 else DATA_BLOCK_TIMEOUT)
                )
        else:
            await self._write(mail_cmd)
            mail_r = await self._reply()
            if mail_r.code != 250:
                await self._rset_after_fail()
                raise SmtpError(
                    reply_text(mail_r), permanent=mail_r.code >= 500, connection_ok=not self.closed
                )
            rcpt_rs = []
            for cmd in rcpt_cmds:
                await self._write(cmd)
                rcpt_rs.append(await self._reply())
            data_r = None
            if not chunking and any(r.code in (250, 251) for r in rcpt_rs):
                await self._write(self.core.data())
                data_r = await self._reply(DATA_INIT_TIMEOUT)
        if mail_r.code != 250:
            # Pipelined: the RCPT/DATA replies are errors too; a 354 would need a lone "."
            if data_r is not None and data_r.code == 354:
                await self._write(self.core.message_data(b""))  # a lone "."
                await self._reply(DATA_END_TIMEOUT)
            await self._rset_after_fail()
            raise SmtpError(reply_text(mail_r), permanent=mail_r.code >= 500, connection_ok=not self.closed)
        accepted = [i for i, r in enumerate(rcpt_rs) if r.code in (250, 251)]
        for (addr, _), r in zip(recipients, rcpt_rs, strict=True):
            results.append(RcptReply(addr, r.code, reply_text(r)))
        if not accepted:
            if data_r is not None and data_r.code == 354:
                # RFC 2920 §3.1: DATA accepted although no recipient was; end it empty
                await self._write(self.core.message_data(b""))  # a lone "."
                await self._reply(DATA_END_TIMEOUT)
            await self._rset_after_fail()
            return results
        if bdat_rs:  # pipelined chunks: the first refused one, else the LAST one's reply
            final = next((r for r in bdat_rs[:-1] if r.code != 250), bdat_rs[-1])
        elif chunking:
            final = await self._bdat(message if body_type == "BINARYMIME" else normalise_newlines(message))
        else:
            assert data_r is not None
            if data_r.code != 354:
                await self._rset_after_fail()
                for i in accepted:
                    results[i] = RcptReply(results[i].address, data_r.code, reply_text(data_r))
                return results
            await self._write(self.core.message_data(message))  # normalised and dot-stuffed
            final = await self._reply(DATA_END_TIMEOUT)
        self.messages_sent += 1
        for i in accepted:
            results[i] = RcptReply(results[i].address, final.code, reply_text(final))
        return results

    async def _bdat(self, data: bytes) -> ServerReply:
        # RFC 3030 §2: pipelined BDAT chunks; every chunk gets a reply, the LAST one the final
        chunks = [data[i : i + BDAT_CHUNK] for i in range(0, len(data), BDAT_CHUNK)] or [b""]
        for n, chunk in enumerate(chunks):
            await self._write(self.core.bdat(chunk, last=n == len(chunks) - 1))
        replies = [
            await self._reply(DATA_END_TIMEOUT if n == len(chunks) - 1 else DATA_BLOCK_TIMEOUT)
            for n in range(len(chunks))
        ]
        for r in replies[:-1]:
            if r.code != 250:
                return r
        return replies[-1]

    async def _rset_after_fail(self) -> None:
        if self.closed:
            return
        try:
            await self.reset()
        except SmtpError:
            pass

    async def reset(self) -> None:
        """RSET (also the liveness check before reusing a cached connection)."""
        await self._write(self.core.rset())
        r = await self._reply(60.0)
        if r.code != 250:
            await self.abort()
            raise SmtpError(reply_text(r))

    async def quit(self) -> None:
        if self.closed:
            return
        try:
            await self._write(self.core.quit())
            await asyncio.wait_for(self._reply(5.0), 5.0)
        except (SmtpError, TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass
        await self.abort()


@dataclass(slots=True)
class _Idle:
    conn: SmtpConnection
    since: float


class ConnectionPool:
    """Connection reuse and per-destination concurrency (Postfix's scache and
    default_destination_concurrency_limit).

    A connection is cached after a successful transaction for `idle_time` seconds and at
    most `max_messages` messages; before reuse it is checked with RSET (pipelined with the
    next transaction when the server offers PIPELINING; a dead one raises StaleConnection
    from `send`, and the caller retries on a `fresh` connection). Keys include the
    route's credentials, so an authenticated session is never shared with another route.
    """

    def __init__(
        self,
        helo: str,
        tls_context: ssl.SSLContext,
        *,
        verify_context: ssl.SSLContext | None = None,
        idle_time: float = 5.0,
        max_messages: int = 100,
        per_destination: int = 20,
        source_addresses: Sequence[str] = (),
    ) -> None:
        self.helo = helo
        # [queue] source_address: at most one IPv4 and one IPv6 address to send from
        self.sources = {ipaddress.ip_address(a).version: a for a in source_addresses}
        self.tls_context = tls_context  # opportunistic / encrypt: not verified (RFC 7435)
        # required / implicit: chain + host name (system store + [tls] ca_file)
        self.verify_context = verify_context or ssl.create_default_context()
        self.idle_time = idle_time
        self.max_messages = max_messages
        self.per_destination = per_destination
        self._idle: dict[tuple[object, ...], list[_Idle]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}

    def limit(self, destination: str) -> asyncio.Semaphore:
        sem = self._limits.get(destination)
        if sem is None:
            sem = self._limits[destination] = asyncio.Semaphore(self.per_destination)
        return sem

    def _source_for(self, address: str) -> str | None:
        """The configured local address of ADDRESS's family (an IPv4 source for an IPv4 peer)."""
        if not self.sources:
            return None
        try:
            return self.sources.get(ipaddress.ip_address(address).version)
        except ValueError:  # a name: the kernel chooses
            return None

    @staticmethod
    def _key(
        host: str,
        address: str,
        port: int,
        tls_mode: str,
        username: str | None,
        tlsa: Sequence[Tlsa] = (),
        dane_names: Sequence[str] = (),
    ) -> tuple[object, ...]:
        return (address, port, tls_mode, username or "", host, tuple(tlsa), tuple(dane_names))

    async def get(
        self,
        host: str,
        address: str,
        port: int,
        *,
        tls_mode: str = "opportunistic",
        username: str | None = None,
        password: str | None = None,
        fresh: bool = False,
        auth_over_unverified: bool = False,
        tlsa: Sequence[Tlsa] = (),
        dane_names: Sequence[str] = (),
    ) -> SmtpConnection:
        """A cached connection (its RSET check still owed: `send` raises StaleConnection if
        it has died) or, with FRESH or none cached, a new one. TLSA (with tls_mode "dane"):
        the usable records the server's chain must satisfy, DANE_NAMES the reference identifiers
        of a DANE-TA match (both part of the cache key)."""
        key = self._key(host, address, port, tls_mode, username, tlsa, dane_names)
        loop = asyncio.get_running_loop()
        idle = [] if fresh else self._idle.get(key, [])
        while idle:
            item = idle.pop()
            if loop.time() - item.since > self.idle_time or item.conn.closed:
                await item.conn.quit()
                continue
            item.conn.rset_pending = True
            return item.conn
        source = self._source_for(address)
        conn = SmtpConnection(host, address, port, source)
        ctx = self.verify_context if tls_mode in ("required", "implicit") else self.tls_context
        try:
            await conn.open(
                self.helo,
                tls_mode=tls_mode,
                tls_context=ctx,
                username=username,
                password=password,
                auth_over_unverified=auth_over_unverified,
                tlsa=tlsa,
                dane_names=dane_names,
            )
        except TlsHandshakeFailed:
            if tls_mode != "opportunistic" or username:
                raise
            log.info("TLS handshake with %s[%s] failed; retrying without TLS", host, address)
            conn = SmtpConnection(host, address, port, source)
            await conn.open(self.helo, tls_mode=tls_mode, tls_context=self.tls_context, try_starttls=False)
        conn.key = key
        return conn

    async def put(self, conn: SmtpConnection) -> None:
        if conn.closed:
            return
        if conn.messages_sent >= self.max_messages:
            await conn.quit()
            return
        key = conn.key
        if not key:
            await conn.quit()
            return
        self._idle.setdefault(key, []).append(_Idle(conn, asyncio.get_running_loop().time()))

    async def expire(self) -> None:
        now = asyncio.get_running_loop().time()
        for key, items in list(self._idle.items()):
            keep = [i for i in items if now - i.since <= self.idle_time and not i.conn.closed]
            for i in items:
                if i not in keep:
                    await i.conn.quit()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def close(self) -> None:
        for items in self._idle.values():
            for i in items:
                await i.conn.quit()
        self._idle.clear()
