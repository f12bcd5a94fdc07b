"""The abuse workload: hostile connections (issue 12 items 1-6) and a legitimate client.

Every hostile slot is one connection at a time: it connects from the attacker's loopback
address, does its abuse until the server refuses or closes, records the outcome and
connects again, until the run's deadline. Outcomes per slot kind (``Tally``):

- ``conns``: connections opened (or attempted);
- ``refused``: the server answered the abuse with a refusal (421/4xx/5xx, ``* BYE``, ``NO``,
  ``BAD``, ``-ERR``, an HTTP status >= 400) or refused the TCP connection;
- ``closed``: the server closed the connection without a refusal (EOF/reset mid-abuse);
- ``held``: connections still open when the run ended (the server kept them all along);
- ``done``: abusive operations the server carried out (a 250 after a big DATA, a ``+`` to a
  pre-login literal, a SEARCH/FETCH/RETR/webmail page answered in full).

The legitimate client (``legit_run``) runs in its own process so the attackers' work in this
process does not show up as its latency. Three loops run side by side, one request at a time
each: SMTP deliveries (connect to QUIT), IMAP sessions (connect, LOGIN, SELECT, FETCH 1
BODY.PEEK[], LOGOUT) and NOOP round trips on an IMAP connection logged in before the attack;
each request is timed, and an exception, a negative reply or a timeout counts as an error. Nothing here talks to anything but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

# ---------------------------------------------------------------- sizes


@dataclass(frozen=True, slots=True)
class Profile:
    duration: float  # seconds of attack per server
    data_size: int  # octets of each anonymous big DATA
    literal_size: int  # octets announced by the pre-login APPEND literal
    big_size: int  # octets of each stored big message (SEARCH/FETCH/RETR)
    big_count: int  # big messages in the SEARCH/FETCH mailbox
    html_depth: int  # nested <div> in the webmail mail
    op_timeout: float  # legitimate client: seconds before an operation counts as an error


DEFAULT = Profile(60, 48_000_000, 40_000_000, 40_000_000, 4, 60_000, 30)
QUICK = Profile(15, 8_000_000, 40_000_000, 8_000_000, 4, 60_000, 20)

# Hostile slots per kind: 50 connections at once (webmail only against Mailhouse: the
# reference has no webmail, so it faces 46).
MIX: dict[str, int] = {
    "slow_smtp": 8,  # item 6: one byte every 3 s on port 25
    "idle_smtp": 4,  # item 5: idle connections on 25/143/110
    "idle_imap": 4,
    "idle_pop3": 4,
    "big_data": 6,  # item 2: anonymous 48 MB DATA
    "prelogin_append": 6,  # item 3: a APPEND INBOX {40000000} before login
    "search_text": 5,  # item 4: SEARCH TEXT over big messages
    "fetch_body": 5,  # item 2: FETCH BODY[] of a big message
    "pop3_retr": 4,  # item 2: RETR of a big message
    "webmail_html": 4,  # item 1: deeply nested HTML in the webmail
}
WEB_ONLY = ("webmail_html",)
SLOW_BYTE_INTERVAL = 3.0
NEEDLE = "zq-no-such-needle-zq"
PASSWORD = "correct-horse-42"  # tests.mailhouse_proc.PASSWORD (every account of the run)


def scaled_mix(total: int) -> dict[str, int]:
    """MIX scaled to TOTAL connections (at least one of each kind)."""
    base = sum(MIX.values())
    return {k: max(1, round(v * total / base)) for k, v in MIX.items()}


# ---------------------------------------------------------------- messages


def _lines(n: int, word: str) -> bytes:
    line = (word * (76 // len(word) + 1))[:76].encode() + b"\r\n"
    return line * (n // len(line) + 1)


def big_message(i: int, size: int) -> bytes:
    """A multipart mail whose text part is quoted-printable (search must decode it) and
    whose attachment is base64: about SIZE octets."""
    head = (
        f"From: Big Sender <big{i}@remote.test>\r\nTo: big@example.org\r\nSubject: big message {i}\r\n"
        f"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <big{i}@remote.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="bb"\r\n\r\n'
    ).encode()
    text = _lines(size // 2, "caf=C3=A9 quarterly report ")[: size // 2]
    att = _lines(size // 2, "QUJDREVGR0g")[: size // 2]
    return (
        head
        + b"--bb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + text
        + b"\r\n--bb\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + att
        + b"\r\n--bb--\r\n"
    )


def small_message(i: int) -> bytes:
    return (
        f"From: Friend <friend@remote.test>\r\nTo: user@example.org\r\nSubject: hello {i}\r\n"
        f"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <small{i}@remote.test>\r\n\r\n"
        f"A short legitimate message number {i}.\r\n"
    ).encode()


def html_message(depth: int) -> bytes:
    html = "<div>" * depth + "deep-marker-42" + "</div>" * depth
    return (
        "From: Mallory <mallory@remote.test>\r\nTo: web@example.org\r\nSubject: deep nest\r\n"
        "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <deep@remote.test>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    ).encode()


# ---------------------------------------------------------------- the target as the attackers see it


@dataclass(frozen=True, slots=True)
class Endpoints:
    host: str
    smtp: int
    imap: int
    pop3: int
    http: int | None = None  # webmail (Mailhouse only)
    web_path: str = ""  # the nested-HTML message's page, e.g. /mail/3/1
    big_user: str = "big@example.org"
    pop_users: tuple[str, ...] = ()
    legit_user: str = "user@example.org"


@dataclass
class Tally:
    conns: int = 0
    refused: int = 0
    closed: int = 0
    held: int = 0
    done: int = 0
    first_refusal: str = ""

    def refuse(self, why: bytes | str) -> None:
        self.refused += 1
        if not self.first_refusal:
            text = why.decode("latin-1") if isinstance(why, bytes) else why
            self.first_refusal = text.strip()[:120]


class Refused(Exception):
    """The server answered the abuse with a refusal."""


def _refusal(line: bytes) -> bool:
    return line[:1] in (b"4", b"5") or line.startswith((b"* BYE", b"-ERR"))


async def connect(host: str, port: int, src: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, local_addr=(src, 0), limit=1 << 20)


async def _line(r: asyncio.StreamReader, timeout: float) -> bytes:
    line = await asyncio.wait_for(r.readline(), timeout)
    if not line:
        raise ConnectionResetError("EOF")
    return line


async def _smtp_reply(r: asyncio.StreamReader, timeout: float) -> bytes:
    while True:
        line = await _line(r, timeout)
        if line[3:4] != b"-":
            return line


async def _wait_eof(r: asyncio.StreamReader, deadline: float) -> bool:
    """Read and drop until EOF (True) or the deadline (False)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            data = await asyncio.wait_for(r.read(65536), left)
        except TimeoutError:
            return False
        if not data:
            return True


# ---------------------------------------------------------------- hostile sessions
# Each returns normally when its connection is over; raises Refused, or ConnectionError/
# IncompleteReadError/OSError when the server closed it. Reaching the deadline with the
# connection open returns "held".


async def slow_smtp(ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float) -> str:
    r, w = await connect(ep.host, ep.smtp, src)
    try:
        greet = await _smtp_reply(r, 60)
        if _refusal(greet):
            raise Refused(greet)
        script = (
            b"EHLO slow.example\r\nMAIL FROM:<slow@remote.test>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n"
        )
        script += b"Subject: slow\r\n\r\n" + b"x" * 10_000
        for i in range(len(script)):
            w.write(script[i : i + 1])  # issue 12 item 6: one byte every 3 s
            await w.drain()
            if await _wait_eof(r, min(deadline, time.monotonic() + SLOW_BYTE_INTERVAL)):
                raise ConnectionResetError("closed")
            if time.monotonic() >= deadline:
                return "held"
        return "held"
    finally:
        w.close()


def idle(service: str) -> Callable[[Endpoints, str, Tally, Profile, float], Awaitable[str]]:
    async def run(ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float) -> str:
        r, w = await connect(ep.host, getattr(ep, service), src)
        try:
            greet = await _line(r, 60)
            if _refusal(greet):
                raise Refused(greet)
            if await _wait_eof(r, deadline):
                raise ConnectionResetError("closed")
            return "held"
        finally:
            w.close()

    return run


CHUNK = _lines(65536, "0123456789abcdefghij")[:65536]


async def big_data(ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float) -> str:
    r, w = await connect(ep.host, ep.smtp, src)
    try:
        for cmd in (
            None,
            b"EHLO big.example",
            b"MAIL FROM:<bulk@remote.test>",
            b"RCPT TO:<bulk@example.org>",
        ):
            if cmd:
                w.write(cmd + b"\r\n")
            reply = await _smtp_reply(r, 120)
            if _refusal(reply):
                raise Refused(reply)
        w.write(b"DATA\r\n")
        reply = await _smtp_reply(r, 120)
        if not reply.startswith(b"354"):
            raise Refused(reply)
        w.write(b"From: <bulk@remote.test>\r\nTo: <bulk@example.org>\r\nSubject: big\r\n\r\n")
        sent = 0
        while sent < p.data_size:
            w.write(CHUNK)
            sent += len(CHUNK)
            await w.drain()
            if r.at_eof():
                raise ConnectionResetError("closed in DATA")
            if time.monotonic() > deadline:
                return "held"  # still sending when the attack ended
        w.write(b"\r\n.\r\n")
        await w.drain()
        reply = await _smtp_reply(r, max(30.0, deadline - time.monotonic() + 30))
        if _refusal(reply):
            raise Refused(reply)
        t.done += 1
        w.write(b"QUIT\r\n")
        return "ok"
    finally:
        w.close()


async def prelogin_append(ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float) -> str:
    r, w = await connect(ep.host, ep.imap, src)
    try:
        greet = await _line(r, 60)
        if _refusal(greet):
            raise Refused(greet)
        w.write(b"a APPEND INBOX {%d}\r\n" % p.literal_size)  # issue 12 item 3
        reply = await _line(r, 60)
        if not reply.startswith(b"+"):
            raise Refused(reply)
        t.done += 1  # the server agreed to take the literal before login
        sent = 0
        while sent < p.literal_size and time.monotonic() < deadline:
            piece = CHUNK[: min(len(CHUNK), p.literal_size - sent)]
            w.write(piece)
            sent += len(piece)
            await w.drain()
        if sent < p.literal_size:
            return "held"
        w.write(b"\r\n")
        await w.drain()
        await _line(r, 60)  # NO/BAD (not logged in): too late, the literal was taken
        return "ok"
    finally:
        w.close()


async def _imap_tagged(r: asyncio.StreamReader, tag: bytes, timeout: float, bye_ends: bool = True) -> bytes:
    """Read responses up to the tagged one (or a ``* BYE`` if BYE_ENDS), streaming literals
    away (never buffered whole)."""
    while True:
        line = await _line(r, timeout)
        m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
        if m:
            left = int(m.group(1))
            while left:
                data = await asyncio.wait_for(r.read(min(left, 1 << 20)), timeout)
                if not data:
                    raise ConnectionResetError("EOF in literal")
                left -= len(data)
            continue
        if line.startswith(tag + b" ") or (bye_ends and line.startswith(b"* BYE")):
            return line


async def _imap_login(
    ep: Endpoints, src: str, user: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await connect(ep.host, ep.imap, src)
    try:
        greet = await _line(r, 60)
        if _refusal(greet):
            raise Refused(greet)
        for tag, cmd in ((b"l", f'LOGIN "{user}" "{PASSWORD}"'.encode()), (b"s", b"SELECT INBOX")):
            w.write(tag + b" " + cmd + b"\r\n")
            reply = await _imap_tagged(r, tag, 120)
            if not reply.startswith(tag + b" OK"):
                raise Refused(reply)
    except BaseException:
        w.close()
        raise
    return r, w


def imap_loop(command: Callable[[int, Profile], bytes]) -> Callable[..., Awaitable[str]]:
    async def run(ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float) -> str:
        r, w = await _imap_login(ep, src, ep.big_user)
        try:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                tag = b"x%d" % n
                w.write(tag + b" " + command(n, p) + b"\r\n")
                # a command still running at the deadline holds the connection ("held")
                try:
                    reply = await _imap_tagged(r, tag, deadline - time.monotonic() + 1)
                except TimeoutError:
                    return "held"
                if not reply.startswith(tag + b" OK"):
                    raise Refused(reply)  # NO [LIMIT], BAD, BYE: the connection is started afresh
                t.done += 1
            return "held"
        finally:
            w.close()

    return run


search_text = imap_loop(lambda n, p: f"UID SEARCH TEXT {NEEDLE}".encode())
fetch_body = imap_loop(lambda n, p: b"FETCH %d BODY.PEEK[]" % (1 + (n - 1) % p.big_count))


async def pop3_retr(ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float, user: str = "") -> str:
    r, w = await connect(ep.host, ep.pop3, src)
    try:
        greet = await _line(r, 60)
        if _refusal(greet):
            raise Refused(greet)
        for cmd in (b"USER " + user.encode(), b"PASS " + PASSWORD.encode()):
            w.write(cmd + b"\r\n")
            reply = await _line(r, 120)
            if not reply.startswith(b"+OK"):
                raise Refused(reply)
        while time.monotonic() < deadline:
            w.write(b"RETR 1\r\n")
            try:
                reply = await _line(r, deadline - time.monotonic() + 1)
                if not reply.startswith(b"+OK"):
                    raise Refused(reply)
                tail = b""
                while not tail.endswith(b"\r\n.\r\n"):
                    data = await asyncio.wait_for(r.read(1 << 20), deadline - time.monotonic() + 1)
                    if not data:
                        raise ConnectionResetError("EOF in RETR")
                    tail = (tail + data)[-5:]
            except TimeoutError:
                return "held"
            t.done += 1
        return "held"
    finally:
        w.close()


async def webmail_html(ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float) -> str:
    import httpx

    transport = httpx.AsyncHTTPTransport(local_address=src, retries=0)
    base = f"http://{ep.host}:{ep.http}"
    async with httpx.AsyncClient(transport=transport, base_url=base, timeout=120) as c:
        page = await c.get("/login")
        m = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if page.status_code >= 400 or not m:
            raise Refused(f"HTTP {page.status_code} on /login")
        r = await c.post(
            "/login", data={"username": "web@example.org", "password": PASSWORD, "csrf": m.group(1)}
        )
        if r.status_code != 303:
            raise Refused(f"HTTP {r.status_code} on POST /login")
        while time.monotonic() < deadline:
            try:
                r = await asyncio.wait_for(c.get(ep.web_path), deadline - time.monotonic() + 1)
            except TimeoutError:
                return "held"
            if r.status_code >= 400:
                raise Refused(f"HTTP {r.status_code}")
            t.done += 1
        return "held"


ATTACKS: dict[str, Callable[..., Awaitable[str]]] = {
    "slow_smtp": slow_smtp,
    "idle_smtp": idle("smtp"),
    "idle_imap": idle("imap"),
    "idle_pop3": idle("pop3"),
    "big_data": big_data,
    "prelogin_append": prelogin_append,
    "search_text": search_text,
    "fetch_body": fetch_body,
    "pop3_retr": pop3_retr,
    "webmail_html": webmail_html,
}


async def hostile_slot(
    kind: str, ep: Endpoints, src: str, t: Tally, p: Profile, deadline: float, **kw: Any
) -> None:
    """One hostile connection at a time of KIND until DEADLINE, outcomes counted in T.

    Whatever is under way at the deadline is cut off and counted as held: the server was
    still keeping the connection (or making it wait) when the attack ended."""
    attack = ATTACKS[kind]
    while time.monotonic() < deadline:
        t.conns += 1
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + deadline - time.monotonic()):
                outcome = await attack(ep, src, t, p, deadline, **kw)
            if outcome == "held":
                t.held += 1
                return
        except Refused as e:
            t.refuse(e.args[0])
        except ConnectionRefusedError as e:
            t.refuse(f"TCP: {e}")
        except TimeoutError:  # the deadline, or a server that stopped answering
            t.held += 1
            return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            t.closed += 1
        except Exception as e:  # httpx errors: the server hung up or reset
            if type(e).__name__.endswith("Timeout"):
                t.held += 1
                return
            if type(e).__module__.startswith(("httpx", "httpcore")):
                t.closed += 1
            else:
                raise
        await asyncio.sleep(0.2)  # then the attacker comes back


async def run_hostile(
    ep: Endpoints, p: Profile, mix: dict[str, int], src: str, deadline: float
) -> dict[str, dict[str, Any]]:
    tallies = {k: Tally() for k in mix}
    tasks = []
    for kind, n in mix.items():
        for i in range(n):
            kw = {"user": ep.pop_users[i % len(ep.pop_users)]} if kind == "pop3_retr" else {}
            tasks.append(asyncio.create_task(hostile_slot(kind, ep, src, tallies[kind], p, deadline, **kw)))
    done, pending = await asyncio.wait(tasks, timeout=deadline - time.monotonic() + 10)
    for task in pending:  # a slot stuck past the grace time: its connection was held
        task.cancel()
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return {k: asdict(v) for k, v in tallies.items()}


# ---------------------------------------------------------------- the legitimate client


@dataclass
class Legit:
    lat: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, str] = field(default_factory=dict)

    def error(self, op: str, e: Exception) -> None:
        self.errors[op] = self.errors.get(op, 0) + 1
        self.first_error.setdefault(op, f"{type(e).__name__}: {e}"[:160])

    async def timed(self, op: str, coro: Awaitable[None], timeout: float) -> bool:
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(coro, timeout)
        except Exception as e:
            self.error(op, e)
            return False
        self.lat.setdefault(op, []).append(time.perf_counter() - t0)
        return True


class Bad(Exception):
    """A negative reply to the legitimate client."""


async def _expect(r: asyncio.StreamReader, ok: bytes, smtp: bool = False) -> bytes:
    line = await (_smtp_reply(r, 3600) if smtp else _line(r, 3600))
    if not line.startswith(ok):
        raise Bad(line[:100].decode("latin-1"))
    return line


async def legit_smtp(ep: Endpoints, n: int) -> None:
    r, w = await connect(ep.host, ep.smtp, "127.0.0.1")
    try:
        await _expect(r, b"220", smtp=True)
        for cmd, ok in (
            (b"EHLO legit.example", b"250"),
            (b"MAIL FROM:<friend@remote.test>", b"250"),
            (f"RCPT TO:<{ep.legit_user}>".encode(), b"250"),
            (b"DATA", b"354"),
            (small_message(1000 + n) + b".", b"250"),
        ):
            w.write(cmd + b"\r\n")
            await _expect(r, ok, smtp=True)
        w.write(b"QUIT\r\n")
        await _expect(r, b"221", smtp=True)
    finally:
        w.close()


async def _legit_imap_cmd(r: asyncio.StreamReader, w: asyncio.StreamWriter, tag: bytes, cmd: bytes) -> None:
    w.write(tag + b" " + cmd + b"\r\n")
    reply = await _imap_tagged(r, tag, 3600, bye_ends=cmd != b"LOGOUT")
    if not reply.startswith(tag + b" OK"):
        raise Bad(reply[:100].decode("latin-1"))


async def legit_imap(ep: Endpoints) -> None:
    r, w = await connect(ep.host, ep.imap, "127.0.0.1")
    try:
        await _expect(r, b"* OK")
        await _legit_imap_cmd(r, w, b"a", f'LOGIN "{ep.legit_user}" "{PASSWORD}"'.encode())
        await _legit_imap_cmd(r, w, b"b", b"SELECT INBOX")
        await _legit_imap_cmd(r, w, b"c", b"FETCH 1 (FLAGS BODY.PEEK[])")
        await _legit_imap_cmd(r, w, b"d", b"LOGOUT")
    finally:
        w.close()


async def _noop_conn(ep: Endpoints, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.wait_for(connect(ep.host, ep.imap, "127.0.0.1"), timeout)
    try:
        await asyncio.wait_for(_expect(r, b"* OK"), timeout)
        login = f'LOGIN "{ep.legit_user}" "{PASSWORD}"'.encode()
        await asyncio.wait_for(_legit_imap_cmd(r, w, b"L", login), timeout)
    except BaseException:
        w.close()
        raise
    return r, w


async def legit_loop(ep: Endpoints, p: Profile, ready: Callable[[], float]) -> Legit:
    """Three loops side by side until the attack ends, each one request at a time with a
    0.1 s pause: SMTP deliveries, IMAP sessions, and NOOPs on a connection logged in before
    the attack (reopened, and counted as an error, if the server drops it). READY() is called
    once that connection is open and returns the wall-clock time the attack starts."""
    out = Legit()
    noop: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    with contextlib.suppress(Exception):
        noop.append(await _noop_conn(ep, p.op_timeout))
    start_at = await asyncio.to_thread(ready)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + p.duration

    async def smtp() -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            await out.timed("smtp_delivery", legit_smtp(ep, n), p.op_timeout)
            await asyncio.sleep(0.1)

    async def imap() -> None:
        while time.monotonic() < deadline:
            await out.timed("imap_login_select_fetch", legit_imap(ep), p.op_timeout)
            await asyncio.sleep(0.1)

    async def noops() -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            if not noop:  # the server dropped it: log in again (not timed), count the error
                try:
                    noop.append(await _noop_conn(ep, p.op_timeout))
                except Exception as e:
                    out.error("imap_noop", e)
                    await asyncio.sleep(0.5)
                    continue
            if not await out.timed("imap_noop", _legit_imap_cmd(*noop[0], b"N%d" % n, b"NOOP"), p.op_timeout):
                noop.pop()[1].close()
            await asyncio.sleep(0.1)

    await asyncio.gather(smtp(), imap(), noops())
    for _, w in noop:
        w.close()
    return out


def legit_child(conn: Connection, ep: Endpoints, p: Profile) -> None:
    """Entry point of the legitimate client's process: sends "ready", receives the start
    time, runs, sends the result (latencies, errors) back over CONN."""

    def ready() -> float:
        conn.send("ready")
        return float(conn.recv())

    res = asyncio.run(legit_loop(ep, p, ready))
    conn.send({"lat": res.lat, "errors": res.errors, "first_error": res.first_error})
    conn.close()
