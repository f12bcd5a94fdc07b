"""IMAP benchmark: Mailhouse vs Dovecot on the same 1,000 messages, in the same run.

Workload (identical for both servers, same seed): ``--clients`` concurrent connections (default
10), each LOGIN + SELECT INBOX then ``--ops`` operations drawn from this mix:

    SELECT 10%  FETCH FLAGS (50 msgs) 20%  FETCH ENVELOPE (20 msgs) 15%  FETCH BODY[] (1 msg) 20%
    UID SEARCH (SUBJECT/FROM/UNSEEN/LARGER/BODY) 10%  UID STORE +/-FLAGS 15%
    APPEND 5%  EXPUNGE 5% (STORE \\Deleted + UID EXPUNGE of a message this client appended)

Printed: ops/s for each server and the ratio Mailhouse/Dovecot, p50/p99 latency, then the
memory per idle connection: ``--idle`` (default 1,000) connections LOGIN, SELECT and IDLE;
the server's memory is measured before and after (RSS and PSS summed over the process tree:
Dovecot forks one imap process per connection, so its RSS counts shared pages many times
and PSS is the fair figure). The benchmark raises its fd limit (inherited by both servers).

Dovecot is Debian's dovecot-imapd configured by ``tests.peers.dovecot.DovecotInstance`` on
loopback with Maildir and ``mail_fsync = optimized`` (Mailhouse fsyncs every APPEND and
flag change before answering OK). Run from the repository root:

    .venv/bin/python -m bench.imap.run [--messages 1000] [--clients 10] [--ops 300] [--idle 1000]

Other profiles: ``bench.imap.sync`` (sync clients over TLS), ``bench.imap.push`` (push latency).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import resource
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.dovecot import DovecotInstance
from tests.peers.ports import free_port

from bench.common import mib, tree_pids
from mailhouse.tls import ensure_self_signed

WORDS = (
    "meeting report budget travel invoice lunch project deadline review party quarterly plan "
    "release server backup holiday contract offer update minutes agenda draft"
).split()
NAMES = "alice bob carol dave erin frank grace heidi ivan judy mallory oscar peggy trent victor".split()
IDLE_USERS = 10  # idle connections are spread over this many accounts (per-user limits)


# ---------------------------------------------------------------- data


def make_messages(n: int, seed: int = 42) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        frm = rng.choice(NAMES)
        subj = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        body_words = rng.randint(50, 2500)
        text = " ".join(rng.choice(WORDS) for _ in range(body_words))
        lines = "\r\n".join(text[k : k + 72] for k in range(0, len(text), 72))
        head = (
            f"From: {frm.title()} <{frm}@example.net>\r\nTo: user@example.org\r\n"
            f"Subject: {subj}\r\nDate: Mon, {1 + i % 28} Jan 2024 {i % 24:02d}:00:00 +0000\r\n"
            f"Message-ID: <m{i}@bench.example>\r\nMIME-Version: 1.0\r\n"
        )
        if i % 4 == 0:
            head += 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            body = (
                f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{lines}\r\n"
                f"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                f"{'QUJDRA==' * 40}\r\n--b--\r\n"
            )
        else:
            head += "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            body = lines + "\r\n"
        out.append((head + body).encode())
    return out


# ---------------------------------------------------------------- a small asyncio IMAP client


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w, self.n = reader, writer, 0

    @classmethod
    async def connect(cls, host: str, port: int, tls: ssl.SSLContext | None = None) -> Client:
        r, w = await asyncio.open_connection(host, port, limit=1 << 22, ssl=tls)
        c = cls(r, w)
        await c._read_response()
        return c

    async def _read_response(self) -> bytes:
        out = b""
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            out += line
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if not m:
                return out
            out += await self.r.readexactly(int(m.group(1)))

    async def cmd(self, text: str | bytes, literal: bytes | None = None) -> bytes:
        self.n += 1
        tag = b"B%d" % self.n
        line = text.encode() if isinstance(text, str) else text
        if literal is None:
            self.w.write(tag + b" " + line + b"\r\n")
        else:
            self.w.write(tag + b" " + line + b" {%d}\r\n" % len(literal))
            await self.w.drain()
            cont = await self._read_response()
            if not cont.startswith(b"+"):
                raise RuntimeError(f"no continuation: {cont!r}")
            self.w.write(literal + b"\r\n")
        await self.w.drain()
        while True:
            resp = await self._read_response()
            if resp.startswith(tag + b" "):
                if not resp[len(tag) + 1 :].startswith(b"OK"):
                    raise RuntimeError(f"{line[:60]!r}: {resp[:200]!r}")
                return resp

    async def login(self, user: str, password: str) -> None:
        for attempt in range(5):  # a loaded server may answer NO [UNAVAILABLE]: retry
            try:
                await self.cmd(f'LOGIN "{user}" "{password}"')
                return
            except RuntimeError as e:
                if "UNAVAILABLE" not in str(e) or attempt == 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))

    async def idle(self) -> None:
        self.n += 1
        self.w.write(b"B%d IDLE\r\n" % self.n)
        await self.w.drain()
        resp = await self._read_response()
        if not resp.startswith(b"+"):
            raise RuntimeError(f"IDLE refused: {resp!r}")

    def close(self) -> None:
        self.w.close()


# ---------------------------------------------------------------- workload

MIX = (
    ("SELECT", 10),
    ("FETCH_FLAGS", 20),
    ("FETCH_ENVELOPE", 15),
    ("FETCH_BODY", 20),
    ("SEARCH", 10),
    ("STORE", 15),
    ("APPEND", 5),
    ("EXPUNGE", 5),
)


def plan(seed: int, ops: int) -> list[str]:
    rng = random.Random(seed)
    names = [n for n, _ in MIX]
    weights = [w for _, w in MIX]
    return rng.choices(names, weights, k=ops)


async def worker(
    host: str, port: int, user: str, k: int, ops: int, messages: Sequence[bytes], lat: dict[str, list[float]]
) -> None:
    rng = random.Random(1000 + k)
    c = await Client.connect(host, port)
    await c.login(user, PASSWORD)
    await c.cmd("SELECT INBOX")
    uids = [int(x) for x in re.findall(rb"\d+", (await _search_all(c)))]
    lo, hi = min(uids), max(uids)
    mine: list[int] = []
    for op in plan(k, ops):
        t0 = time.perf_counter()
        if op == "SELECT":
            await c.cmd("SELECT INBOX")
        elif op == "FETCH_FLAGS":
            a = rng.randint(lo, hi)
            await c.cmd(f"UID FETCH {a}:{a + 49} (FLAGS)")
        elif op == "FETCH_ENVELOPE":
            a = rng.randint(lo, hi)
            await c.cmd(f"UID FETCH {a}:{a + 19} (ENVELOPE)")
        elif op == "FETCH_BODY":
            await c.cmd(f"UID FETCH {rng.randint(lo, hi)} (BODY.PEEK[])")
        elif op == "SEARCH":
            q = rng.choice(
                [
                    f"SUBJECT {rng.choice(WORDS)}",
                    f"FROM {rng.choice(NAMES)}",
                    "UNSEEN",
                    f"LARGER {rng.randint(1000, 20000)}",
                    f"BODY {rng.choice(WORDS)}",
                ]
            )
            await c.cmd(f"UID SEARCH {q}")
        elif op == "STORE":
            sign = rng.choice("+-")
            await c.cmd(f"UID STORE {rng.randint(lo, hi)} {sign}FLAGS.SILENT (\\Seen)")
        elif op == "APPEND":
            resp = await c.cmd("APPEND INBOX (\\Seen)", literal=rng.choice(messages))
            m = re.search(rb"APPENDUID \d+ (\d+)", resp)
            if m:
                mine.append(int(m.group(1)))
        elif op == "EXPUNGE":
            if not mine:
                resp = await c.cmd("APPEND INBOX", literal=rng.choice(messages))
                m = re.search(rb"APPENDUID \d+ (\d+)", resp)
                mine.append(int(m.group(1)) if m else 0)
            uid = mine.pop()
            await c.cmd(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
            await c.cmd(f"UID EXPUNGE {uid}")
        lat.setdefault(op, []).append(time.perf_counter() - t0)
    await c.cmd("LOGOUT")
    c.close()


async def _search_all(c: Client) -> bytes:
    c.n += 1
    tag = b"B%d" % c.n
    c.w.write(tag + b" UID SEARCH ALL\r\n")
    await c.w.drain()
    out = b""
    while True:
        resp = await c._read_response()
        if resp.startswith(tag):
            return out
        if resp.startswith(b"* SEARCH"):
            out += resp[8:]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))] if s else 0.0


async def run_load(
    host: str, port: int, user: str, clients: int, ops: int, messages: Sequence[bytes]
) -> dict[str, Any]:
    return await run_mix([(host, port)], user, clients, ops, messages)


async def run_mix(
    targets: Sequence[tuple[str, int]], user: str, clients: int, ops: int, messages: Sequence[bytes]
) -> dict[str, Any]:
    """The IMAP mix with CLIENTS concurrent clients; client k connects to targets[k % len(targets)]
    (several targets: nodes behind a balancer). Client k's operations depend on k only, so the
    workload is the same however the clients are split. Returns elapsed, ops, lat, p50, p99."""
    lat: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    await asyncio.gather(
        *(worker(*targets[k % len(targets)], user, k, ops, messages, lat) for k in range(clients))
    )
    elapsed = time.perf_counter() - t0
    every = [x for xs in lat.values() for x in xs]
    return {
        "elapsed": elapsed,
        "ops": len(every),
        "lat": lat,
        "p50": pct(every, 0.5),
        "p99": pct(every, 0.99),
    }


# ---------------------------------------------------------------- idle memory


def _mem(pid: int, key: str) -> int:
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


async def idle_memory(
    host: str, port: int, users: Sequence[str], n: int, pid: int, tls: ssl.SSLContext | None = None
) -> tuple[int, int, int]:
    """Open n IDLE connections (over TLS with ``tls``); return (connections made, RSS delta,
    PSS delta) in bytes."""
    await asyncio.sleep(1.0)
    rss0, pss0 = _mem(pid, "Rss"), _mem(pid, "Pss")
    sem = asyncio.Semaphore(50)
    conns: list[Client] = []

    async def one(i: int) -> None:
        async with sem:
            c = await Client.connect(host, port, tls)
            await c.login(users[i % len(users)], PASSWORD)
            await c.cmd("SELECT INBOX")
            await c.idle()
            conns.append(c)

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        print(f"  {len(errors)} idle connections failed, first: {errors[0]!r}", file=sys.stderr)
    await asyncio.sleep(2.0)
    rss1, pss1 = _mem(pid, "Rss"), _mem(pid, "Pss")
    for c in conns:
        c.close()
    return len(conns), rss1 - rss0, pss1 - pss0


# ---------------------------------------------------------------- servers


def start_mailhouse(
    root: Path, messages: Sequence[bytes], workers: int, services: tuple[str, ...] = ("imap",)
) -> MailhouseProcess:
    # the load generator's idle connections come from one address: exempt from the per-address
    # and per-account connection limits (issue 12 item 5), as Dovecot's are raised for it
    extra = '[auth]\nallow_plaintext = true\n[limits]\ntrusted_networks = ["127.0.0.0/8"]\n'
    if workers > 1:
        extra += f"[server]\nworkers = {workers}\n"
    mh = MailhouseProcess(root, services=services, extra=extra)
    mh.add_domain("example.org")
    mh.add_user("user@example.org")
    for i in range(IDLE_USERS):
        mh.add_user(f"idle{i}@example.org")
    mh.start()
    asyncio.run(append_messages([mh.addr("imap")], "user@example.org", messages))
    return mh


async def append_messages(
    targets: Sequence[tuple[str, int]], user: str, messages: Sequence[bytes], conns: int = 8
) -> None:
    """APPEND MESSAGES to USER's INBOX over CONNS connections, connection k on targets[k % len]."""
    cs = [await Client.connect(*targets[k % len(targets)]) for k in range(conns)]
    for c in cs:
        await c.login(user, PASSWORD)

    async def push(k: int) -> None:
        for j in range(k, len(messages), len(cs)):
            await cs[k].cmd("APPEND INBOX", literal=messages[j])

    await asyncio.gather(*(push(k) for k in range(len(cs))))
    for c in cs:
        c.close()


def start_dovecot(root: Path, messages: Sequence[bytes], extra_conf: str = "") -> DovecotInstance:
    users = {"user@example.org": PASSWORD} | {f"idle{i}@example.org": PASSWORD for i in range(IDLE_USERS)}
    conf = (
        "mail_fsync = optimized\n"
        "default_process_limit = 2000\ndefault_client_limit = 5000\n"
        "service imap {\n  process_limit = 2000\n}\n"
    ) + extra_conf
    dc = DovecotInstance(root, users=users, pop3_port=0, extra_conf=conf)
    dc.write_config()
    base = time.time() - 86400 * 30
    for i, m in enumerate(messages):
        dc.add_message("user@example.org", m, internal_date=base + i * 60)
    return dc.start()


def client_tls() -> ssl.SSLContext:
    """The load generator's TLS context (the servers' certificate is self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def dovecot_tls_conf(cert: Path, key: Path, host: str, port: int) -> str:
    """Dovecot settings for an imaps listener on HOST:PORT with the given certificate."""
    return (
        f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n"
        f"service imap-login {{\n  inet_listener imaps {{\n    address = {host}\n    port = {port}\n"
        "    ssl = yes\n  }\n}\n"
    )


async def _wait_login(host: str, port: int, timeout: float = 30.0) -> None:
    """Dovecot's auth process may still be starting: wait for one LOGIN to succeed."""
    end = time.monotonic() + timeout
    while True:
        try:
            c = await Client.connect(host, port)
            await c.cmd(f'LOGIN "user@example.org" "{PASSWORD}"')
            c.close()
            return
        except (RuntimeError, OSError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--ops", type=int, default=300, help="operations per client")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections for the memory test")
    ap.add_argument("--idle-tls", action="store_true", help="the idle connections use implicit TLS")
    ap.add_argument("--workers", type=int, default=1, help="Mailhouse [server] workers")
    ap.add_argument("--only", choices=("mailhouse", "dovecot"), help="run one server only (no ratio)")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * a.idle + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by both servers
    messages = make_messages(a.messages)
    idle_users = [f"idle{i}@example.org" for i in range(IDLE_USERS)]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-imap-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # Dovecot's auth and mail processes run as other users
        for name in [a.only] if a.only else ["mailhouse", "dovecot"]:
            (root / name).mkdir()
            t0 = time.perf_counter()
            if name == "mailhouse":
                srv: MailhouseProcess | DovecotInstance = start_mailhouse(
                    root / name, messages, a.workers, services=("imap", "imaps")
                )
                host, port = srv.addr("imap")  # type: ignore[union-attr]
                idle_port = srv.addr("imaps")[1] if a.idle_tls else port  # type: ignore[union-attr]
                pid = srv.proc.pid  # type: ignore[union-attr]
            else:
                idle_port = free_port("127.0.0.1")
                cert, key = ensure_self_signed(root / "tls", "localhost")
                tls_conf = dovecot_tls_conf(cert, key, "127.0.0.1", idle_port) if a.idle_tls else ""
                srv = start_dovecot(root / name, messages, tls_conf)
                host, port = srv.host, srv.imap_port  # type: ignore[union-attr]
                idle_port = idle_port if a.idle_tls else port
                pid = srv.proc.pid  # type: ignore[union-attr]
            print(
                f"{name}: loaded {len(messages)} messages in {time.perf_counter() - t0:.1f}s", file=sys.stderr
            )
            try:
                if name == "dovecot":
                    asyncio.run(_wait_login(host, port))
                # idle memory first, on a fresh process: after the load phase the heap holds
                # caches and freed-but-kept memory that would hide the per-connection cost
                tls = client_tls() if a.idle_tls else None
                idle = asyncio.run(idle_memory(host, idle_port, idle_users, a.idle, pid, tls))
                print(f"{name}: idle {idle}", file=sys.stderr)
                r = asyncio.run(run_load(host, port, "user@example.org", a.clients, a.ops, messages))
                r["idle"] = idle
                print(
                    f"{name}: {r['ops']} ops in {r['elapsed']:.1f}s = {r['ops'] / r['elapsed']:.0f} ops/s,"
                    f" p99 {r['p99'] * 1000:.1f} ms",
                    file=sys.stderr,
                )
                results[name] = r
            except Exception:
                if name == "dovecot":
                    print(srv.log(40), file=sys.stderr)  # type: ignore[union-attr]
                raise
            finally:
                srv.stop()
    if len(results) < 2:
        return 0
    mh, dc = results["mailhouse"], results["dovecot"]
    print(f"\nIMAP mix, {a.messages} messages, {a.clients} clients x {a.ops} ops")
    print(f"{'':12}{'ops/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:12}{r['ops'] / r['elapsed']:>10.0f}{r['p50'] * 1000:>10.2f}{r['p99'] * 1000:>10.2f}")
    ratio = (mh["ops"] / mh["elapsed"]) / (dc["ops"] / dc["elapsed"])
    print(f"ratio Mailhouse/Dovecot: {ratio:.2f}x   (goal >= 1.5x, issue 13 §2)")
    print("\np99 by operation (ms):   " + "  ".join(f"{op}" for op, _ in MIX))
    for name, r in results.items():
        print(f"  {name:10}" + "  ".join(f"{pct(r['lat'].get(op, []), 0.99) * 1000:.1f}" for op, _ in MIX))
    how = "over TLS" if a.idle_tls else "plain"
    print(f"\nidle connections {how} (LOGIN + SELECT + IDLE), goal <= 64 KiB each for Mailhouse:")
    for name, r in results.items():
        n, drss, dpss = r["idle"]
        per_rss = drss / max(n, 1) / 1024
        per_pss = dpss / max(n, 1) / 1024
        print(
            f"  {name:10} {n} conns: +{mib(drss)} RSS ({per_rss:.1f} KiB/conn), +{mib(dpss)} PSS ({per_pss:.1f} KiB/conn)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
