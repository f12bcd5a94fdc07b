"""A small scriptable SMTP server for client and queue tests (loopback only).

It is deliberately independent of Mailhouse's own cores, so it can disagree with them:
it records the raw bytes of every DATA/BDAT transfer and every command line, answers
RCPT per address through `rcpt_reply`, and can misbehave on request (inject plaintext
after the 220 to STARTTLS, send an over-long reply, insist on pipelining).

Runs in the caller's event loop (`await start()`) or in its own thread (`start_thread()`)
when the test itself is synchronous and drives separate Mailhouse processes.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.ports import check_loopback


@dataclass
class Transaction:
    mail: bytes = b""
    rcpts: list[bytes] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    data: bytes = b""  # raw wire bytes of DATA (dot-stuffed, incl. final ".\r\n") or BDAT payload
    bdat: bool = False


def default_rcpt_reply(addr: str) -> bytes:
    local = addr.split("@")[0].lower()
    if local.startswith("perm"):
        return b"550 5.1.1 <" + addr.encode() + b">: Recipient address rejected: no such user"
    if local.startswith("temp"):
        return b"451 4.3.0 <" + addr.encode() + b">: try again later"
    return b"250 2.1.5 Ok"


class FakeSMTP:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        extensions: tuple[str, ...] = (
            "PIPELINING",
            "8BITMIME",
            "DSN",
            "SIZE 52428800",
            "ENHANCEDSTATUSCODES",
        ),
        rcpt_reply: Callable[[str], bytes] = default_rcpt_reply,
        data_reply: bytes = b"250 2.0.0 Ok: queued",
        greeting: bytes = b"220 fake.test ESMTP fake",
        starttls_inject: bytes = b"",
        strict_pipelining: bool = False,
        tls_dir: Path | None = None,
        auth: tuple[str, str] | None = None,
        starttls_break: bool = False,
        server_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.host = check_loopback(host)
        self.port = port
        self.extensions = extensions
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.greeting = greeting
        self.starttls_inject = starttls_inject
        self.strict_pipelining = strict_pipelining
        self.auth = auth
        self.starttls_break = starttls_break  # answer 220 to STARTTLS, then hang up
        self.transactions: list[Transaction] = []
        self.commands: list[bytes] = []
        self.connections = 0
        self.peers: list[str] = []  # the client address of each connection
        self.tls_sessions = 0
        self.authenticated: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self._ssl: ssl.SSLContext | None = server_ssl  # e.g. a certificate from tests/smtpclient/testca.py
        if tls_dir is not None:
            from mailhouse import tls

            cert, key = tls.ensure_self_signed(tls_dir, "fake.test")
            self._ssl = tls.server_context(cert, key)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> FakeSMTP:
        self._server = await asyncio.start_server(self._session, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def start_thread(self) -> FakeSMTP:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    # ------------------------------------------------------------ session
    def drop_connections(self) -> None:
        """Hang up every open session (as a server restarting or timing out idle clients)."""
        for w in list(self._writers):
            w.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername")[0])
        self._writers.add(writer)
        tls = False
        tx: Transaction | None = None
        queued: list[bytes] = []  # replies held back (strict pipelining)

        async def send(line: bytes) -> None:
            if self.strict_pipelining and tx is not None and not tx.data and tx.mail and held:
                queued.append(line)
                return
            writer.write(line + b"\r\n")
            await writer.drain()

        held = False
        try:
            writer.write(self.greeting + b"\r\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    return
                self.commands.append(line)
                cmd = line.rstrip(b"\r\n")
                verb = cmd.split(b" ", 1)[0].upper().split(b":")[0]
                if verb in (b"EHLO", b"HELO"):
                    exts = [e for e in self.extensions if not (tls and e == "STARTTLS")]
                    if self.auth and (tls or self._ssl is None):
                        exts.append("AUTH PLAIN LOGIN")
                    lines = [b"fake.test"] + [e.encode() for e in exts]
                    out = b"".join(b"250-" + x + b"\r\n" for x in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"
                    writer.write(out)
                    await writer.drain()
                elif verb == b"STARTTLS" and self._ssl is not None and not tls:
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n" + self.starttls_inject)
                    await writer.drain()
                    if self.starttls_break:
                        return
                    if self.starttls_inject:
                        await asyncio.sleep(0.5)
                        return
                    await writer.start_tls(self._ssl)
                    tls = True
                    self.tls_sessions += 1
                elif verb == b"AUTH":
                    parts = cmd.split(b" ")
                    if len(parts) == 3 and parts[1].upper() == b"PLAIN":
                        _, user, pw = base64.b64decode(parts[2]).split(b"\0")
                        if self.auth == (user.decode(), pw.decode()):
                            self.authenticated.append(user.decode())
                            await send(b"235 2.7.0 Authentication successful")
                        else:
                            await send(b"535 5.7.8 Authentication failed")
                    else:
                        await send(b"504 5.5.4 unsupported")
                elif verb == b"MAIL":
                    tx = Transaction(mail=cmd)
                    held = self.strict_pipelining
                    await send(b"250 2.1.0 Ok")
                elif verb == b"RCPT":
                    assert tx is not None
                    tx.rcpts.append(cmd)
                    addr = cmd.split(b"<", 1)[1].split(b">", 1)[0].decode()
                    reply = self.rcpt_reply(addr)
                    if reply.startswith(b"2"):
                        tx.accepted.append(addr)
                    await send(reply)
                elif verb == b"DATA":
                    held = False
                    for q in queued:
                        writer.write(q + b"\r\n")
                    queued.clear()
                    if tx is None or not tx.accepted:
                        writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                        await writer.drain()
                        continue
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    tx.data = await reader.readuntil(b"\r\n.\r\n")
                    self.transactions.append(tx)
                    await send(self.data_reply)
                    tx = None
                elif verb == b"BDAT":
                    held = False
                    for q in queued:
                        writer.write(q + b"\r\n")
                    queued.clear()
                    parts = cmd.split(b" ")
                    size, last = int(parts[1]), len(parts) > 2 and parts[2].upper() == b"LAST"
                    chunk = await reader.readexactly(size)  # RFC 3030 §2: read even when refused
                    if tx is None or not tx.accepted:
                        await send(b"554 5.5.1 Error: no valid recipients")
                        continue
                    tx.bdat = True
                    tx.data += chunk
                    if last:
                        self.transactions.append(tx)
                        tx = None
                        await send(self.data_reply)
                    else:
                        await send(b"250 2.0.0 chunk ok")
                elif verb == b"RSET":
                    tx = None
                    await send(b"250 2.0.0 Ok")
                elif verb == b"NOOP":
                    await send(b"250 2.0.0 Ok")
                elif verb == b"QUIT":
                    await send(b"221 2.0.0 Bye")
                    return
                else:
                    await send(b"502 5.5.2 Error: command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
