"""IMAP benchmark, sync-client profile: Mailhouse vs Dovecot on the same 1,000 messages, same run.

The shape of what Thunderbird, mbsync and phone clients do (issue 13 §2): ``--clients`` (default
10) persistent connections over TLS (implicit TLS, port 993-style), each LOGIN once, then
``--rounds`` sync rounds of:

    LIST "" "*" (50 % of rounds)   STATUS INBOX (MESSAGES UIDNEXT UNSEEN) (50 %)   SELECT INBOX
    FETCH 1:* (UID FLAGS)                       the flag resync of the whole mailbox
    UID FETCH a:b (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)   headers: the whole mailbox in
                                                the first round, then new mail + a 100-message page
    UID FETCH n BODY.PEEK[]                     bodies: ~30 % of the mailbox over the run
    UID STORE n +/-FLAGS (\\Seen | \\Flagged | $LabelK | $Work ...) (50 % of rounds, 4 each)
    APPEND INBOX (a new message; 1 per round)
    UID STORE u +FLAGS.SILENT (\\Deleted) + EXPUNGE of a message the client appended (50 %)

Every response is checked as a client would (a violation is counted, never fatal):
- announced flags: a keyword in a FETCH ... FLAGS must have been listed by ``* FLAGS`` first
  (RFC 9051 §7.3.5; RFC 3501 §7.2.6);
- EXISTS/EXPUNGE consistency: ``* n EXPUNGE`` and ``* n FETCH`` need 1 <= n <= EXISTS, EXISTS
  never shrinks except through EXPUNGE (RFC 9051 §7.4.1, §7.3.1), and ``FETCH 1:*`` answers
  exactly EXISTS messages.

Printed: commands/s of each server and the ratio Mailhouse/Dovecot (goal >= 1.5x), the same for the
sync rounds alone (the clients start them together once all have logged in), p50/p99 per
command type, and the violations. Also the CPU time the server's processes used during the
rounds (``/proc``: the server and every live descendant, plus the children it reaped) and the
commands per CPU-second: on a shared machine commands/s follows the scheduler's share (Dovecot runs
a process per connection, Mailhouse one event loop per worker), the CPU cost per command does not. Dovecot: Debian's dovecot-imapd on loopback with Maildir and
``mail_fsync = optimized`` (as ``bench.imap.run``); both servers use one self-signed certificate.

    .venv/bin/python -m bench.imap.sync [--messages 1000] [--clients 10] [--rounds 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.mailhouse_proc import PASSWORD
from tests.peers.ports import free_port

from bench.imap.run import (
    Client,
    _wait_login,
    client_tls,
    dovecot_tls_conf,
    make_messages,
    pct,
    start_dovecot,
    start_mailhouse,
)
from mailhouse.tls import ensure_self_signed

USER = "user@example.org"
KEYWORDS = ("$Label1", "$Label2", "$Label3", "$Work", "$Todo")
SYSTEM = ("\\Seen", "\\Flagged", "\\Answered")
HEADER_PAGE = 100  # messages a later round's header fetch covers besides new mail
BODY_SHARE = 0.30  # of the mailbox, downloaded as BODY.PEEK[] over the whole run
STORES_PER_ROUND = 4
OPS: tuple[str, ...] = (
    "LOGIN",
    "LIST",
    "STATUS",
    "SELECT",
    "FETCH_FLAGS",
    "FETCH_HEADERS",
    "FETCH_BODY",
    "STORE",
)
OPS += ("APPEND", "EXPUNGE")

_UNTAGGED = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE|FETCH)\b", re.M)
_FLAGS_RESP = re.compile(rb"^\* FLAGS \(([^)]*)\)", re.M)
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_UID = re.compile(rb"UID (\d+)")


@dataclass
class Checker:
    """What one client knows of its selected mailbox, and the violations it saw."""

    exists: int = 0
    announced: set[bytes] = field(default_factory=set)
    violations: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def bad(self, kind: str, detail: bytes) -> None:
        self.violations[kind] = self.violations.get(kind, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {detail[:120]!r}")

    def feed(self, resp: bytes, *, select: bool = False) -> int:
        """Check the untagged responses of one command; returns the number of FETCH responses."""
        fetches = 0
        for m in _FLAGS_RESP.finditer(resp):
            self.announced = {f.lower() for f in m.group(1).split()}
        for resp_line in _split_untagged(resp):
            um = _UNTAGGED.match(resp_line)
            if um is None:
                continue
            n, kind = int(um.group(1)), um.group(2)
            if kind == b"EXISTS":
                if n < self.exists and not select:
                    self.bad("EXISTS shrank without EXPUNGE", resp_line)
                self.exists = n
            elif kind == b"EXPUNGE":
                if not 1 <= n <= self.exists:
                    self.bad("EXPUNGE out of range", resp_line)
                else:
                    self.exists -= 1
            else:
                fetches += 1
                if not 1 <= n <= self.exists:
                    self.bad("FETCH out of range", resp_line)
                fm = _FETCH_FLAGS.search(resp_line)
                if fm is not None:
                    for f in fm.group(1).split():
                        if not f.startswith(b"\\") and f.lower() not in self.announced:
                            self.bad("keyword used before announced", resp_line)
                            break
        return fetches


def _split_untagged(resp: bytes) -> list[bytes]:
    """The untagged responses of a command's output (literals stay inside their response)."""
    out: list[bytes] = []
    for part in resp.split(b"\r\n* "):
        out.append(part if part.startswith(b"* ") else b"* " + part)
    return out


class SyncClient:
    def __init__(self, c: Client, k: int, rounds: int, n_msgs: int, messages: Sequence[bytes]) -> None:
        self.c, self.k, self.rounds, self.messages = c, k, rounds, messages
        self.rng = random.Random(7000 + k)
        self.check = Checker()
        self.lat: dict[str, list[float]] = {}
        self.uids: list[int] = []
        self.mine: list[int] = []
        self.highest = 0
        self.bodies_per_round = max(1, round(n_msgs * BODY_SHARE / rounds))

    async def timed(self, op: str, text: str, literal: bytes | None = None, *, select: bool = False) -> bytes:
        t0 = time.perf_counter()
        resp = await cmd_all(self.c, text, literal)
        self.lat.setdefault(op, []).append(time.perf_counter() - t0)
        self.check.feed(resp, select=select)
        return resp

    async def run(self) -> None:
        for r in range(self.rounds):
            await self.round(r)

    async def round(self, r: int) -> None:
        rng = self.rng
        if rng.random() < 0.5:
            await self.timed("LIST", 'LIST "" "*"')
        if rng.random() < 0.5:
            await self.timed("STATUS", "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)")
        await self.timed("SELECT", "SELECT INBOX", select=True)
        before = self.check.exists
        resp = await self.timed("FETCH_FLAGS", "FETCH 1:* (UID FLAGS)")
        self.uids = sorted({int(u) for u in _UID.findall(resp)})
        # 1:* is every message at the time: at least EXISTS before, at most EXISTS after
        # (mail may arrive meanwhile; an EXPUNGE may not be sent during FETCH, RFC 9051 §7.4.1)
        if not before <= len(self.uids) <= self.check.exists:
            self.check.bad(
                "FETCH 1:* count != EXISTS", b"%d not in %d..%d" % (len(self.uids), before, self.check.exists)
            )
        if not self.uids:
            return
        if r == 0:
            rng_hdr = f"{self.uids[0]}:*"
        else:
            page = rng.randrange(max(1, len(self.uids) - HEADER_PAGE))
            rng_hdr = f"{self.uids[page]}:{self.uids[min(len(self.uids) - 1, page + HEADER_PAGE - 1)]}"
            if self.highest:
                await self.timed(
                    "FETCH_HEADERS",
                    f"UID FETCH {self.highest + 1}:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)",
                )
        await self.timed(
            "FETCH_HEADERS", f"UID FETCH {rng_hdr} (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"
        )
        self.highest = self.uids[-1]
        for uid in rng.sample(self.uids, min(len(self.uids), self.bodies_per_round)):
            await self.timed("FETCH_BODY", f"UID FETCH {uid} (BODY.PEEK[])")
        if rng.random() < 0.5:
            for _ in range(STORES_PER_ROUND):
                flag = rng.choice(KEYWORDS + SYSTEM)
                await self.timed(
                    "STORE", f"UID STORE {rng.choice(self.uids)} {rng.choice('+-')}FLAGS ({flag})"
                )
        resp = await self.timed("APPEND", "APPEND INBOX", literal=rng.choice(self.messages))
        m = re.search(rb"APPENDUID \d+ (\d+)", resp)
        if m:
            self.mine.append(int(m.group(1)))
        if self.mine and rng.random() < 0.5:
            uid = self.mine.pop(0)
            t0 = time.perf_counter()
            self.check.feed(await cmd_all(self.c, f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
            self.check.feed(await cmd_all(self.c, "EXPUNGE"))
            self.lat.setdefault("EXPUNGE", []).append(time.perf_counter() - t0)


async def cmd_all(c: Client, text: str, literal: bytes | None = None) -> bytes:
    """Run a command; return every response it got (untagged ones included), tagged last."""
    c.n += 1
    tag = b"S%d" % c.n
    line = text.encode()
    if literal is None:
        c.w.write(tag + b" " + line + b"\r\n")
    else:
        c.w.write(tag + b" " + line + b" {%d}\r\n" % len(literal))
        await c.w.drain()
        out = b""
        while True:  # untagged responses may come before the continuation
            resp = await c._read_response()
            if resp.startswith(b"+"):
                break
            out += resp
        c.w.write(literal + b"\r\n")
    await c.w.drain()
    out = b"" if literal is None else out
    while True:
        resp = await c._read_response()
        out += resp
        if resp.startswith(tag + b" "):
            if not resp[len(tag) + 1 :].startswith(b"OK"):
                raise RuntimeError(f"{line[:60]!r}: {resp[:200]!r}")
            return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process PID, its live descendants and the children they reaped."""
    tck = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(d))
        ticks[int(d)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += ticks.get(p, 0)
        todo += children.get(p, [])
    return total / tck


async def run_sync(
    host: str,
    port: int,
    clients: int,
    rounds: int,
    n_msgs: int,
    messages: Sequence[bytes],
    server_pid: int | None = None,
) -> dict[str, Any]:
    ctx = client_tls()
    workers: list[SyncClient] = []
    logged_in = asyncio.Event()  # the rounds start together once every client has logged in
    rounds_t0: list[float] = []
    cpu0: list[float] = []

    async def one(k: int) -> None:
        r, w = await asyncio.open_connection(host, port, ssl=ctx, limit=1 << 22)
        c = Client(r, w)
        await c._read_response()
        sc = SyncClient(c, k, rounds, n_msgs, messages)
        workers.append(sc)
        t0 = time.perf_counter()
        await c.login(USER, PASSWORD)
        sc.lat["LOGIN"] = [time.perf_counter() - t0]
        if sum(1 for w in workers if "LOGIN" in w.lat) == clients:
            rounds_t0.append(time.perf_counter())
            cpu0.append(tree_cpu(server_pid) if server_pid else 0.0)
            logged_in.set()
        await logged_in.wait()
        await sc.run()
        await c.cmd("LOGOUT")
        c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    rounds_elapsed = time.perf_counter() - rounds_t0[0]
    await asyncio.sleep(0.2)  # the server reaps the processes of the connections that logged out
    rounds_cpu = tree_cpu(server_pid) - cpu0[0] if server_pid else 0.0
    lat: dict[str, list[float]] = {}
    violations: dict[str, int] = {}
    examples: list[str] = []
    for sc in workers:
        for op, xs in sc.lat.items():
            lat.setdefault(op, []).extend(xs)
        for kind, n in sc.check.violations.items():
            violations[kind] = violations.get(kind, 0) + n
        examples += sc.check.examples
    # an EXPUNGE sample is two commands (STORE \Deleted, EXPUNGE)
    commands = sum(len(xs) for xs in lat.values()) + len(lat.get("EXPUNGE", []))
    return {
        "elapsed": elapsed,
        "rounds_elapsed": rounds_elapsed,  # from the moment every client had logged in
        "rounds_cpu": rounds_cpu,  # server CPU seconds from then on
        "commands": commands,
        "lat": lat,
        "violations": violations,
        "examples": examples[:5],
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'':12}{'cmds':>8}{'cmds/s':>10}{'violations':>12}{'rounds cmds/s':>15}"
        f"{'rounds CPU s':>14}{'cmds/CPU-s':>12}"
    ]
    for name, r in results.items():
        n_rounds = r["commands"] - len(r["lat"].get("LOGIN", []))
        per_cpu = n_rounds / r["rounds_cpu"] if r["rounds_cpu"] else 0.0
        lines.append(
            f"{name:12}{r['commands']:>8}{r['commands'] / r['elapsed']:>10.0f}"
            f"{sum(r['violations'].values()):>12}{n_rounds / r['rounds_elapsed']:>15.0f}"
            f"{r['rounds_cpu']:>14.2f}{per_cpu:>12.0f}"
        )
    lines.append("\np50 / p99 by command type (ms):")
    lines.append(f"  {'':14}" + "".join(f"{name:>22}" for name in results))
    for op in OPS:
        cells = []
        for r in results.values():
            xs = r["lat"].get(op, [])
            cells.append(f"{len(xs):>5} x {pct(xs, 0.5) * 1000:6.2f} / {pct(xs, 0.99) * 1000:6.1f}")
        lines.append(f"  {op:14}" + "".join(f"{c:>22}" for c in cells))
    for name, r in results.items():
        if r["violations"]:
            lines.append(f"\n{name} violations: {r['violations']}")
            lines += [f"  e.g. {e}" for e in r["examples"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1, help="Mailhouse [server] workers")
    ap.add_argument("--only", choices=("mailhouse", "dovecot"), help="run one server only (no ratio)")
    a = ap.parse_args(argv)
    messages = make_messages(a.messages)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-imapsync-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # Dovecot's auth and mail processes run as other users
        cert, key = ensure_self_signed(root / "tls", "localhost")
        for name in [a.only] if a.only else ["mailhouse", "dovecot"]:
            (root / name).mkdir()
            t0 = time.perf_counter()
            srv: Any
            if name == "mailhouse":
                srv = start_mailhouse(root / name, messages, a.workers, services=("imap", "imaps"))
                host, port = srv.addr("imaps")
            else:
                tls_port = free_port("127.0.0.1")
                srv = start_dovecot(root / name, messages, dovecot_tls_conf(cert, key, "127.0.0.1", tls_port))
                host, port = srv.host, tls_port
            print(
                f"{name}: loaded {len(messages)} messages in {time.perf_counter() - t0:.1f}s", file=sys.stderr
            )
            try:
                if name == "dovecot":
                    asyncio.run(_wait_login(srv.host, srv.imap_port))
                pid = srv.proc.pid if srv.proc is not None else None
                r = asyncio.run(run_sync(host, port, a.clients, a.rounds, a.messages, messages, pid))
                print(
                    f"{name}: {r['commands']} commands in {r['elapsed']:.1f}s"
                    f" = {r['commands'] / r['elapsed']:.0f}/s",
                    file=sys.stderr,
                )
                results[name] = r
            except Exception:
                if name == "dovecot":
                    print(srv.log(40), file=sys.stderr)
                raise
            finally:
                srv.stop()
    print(
        f"\nIMAP sync-client profile, {a.messages} messages, {a.clients} TLS clients x {a.rounds} rounds"
        f" (Mailhouse workers: {a.workers})"
    )
    print(table(results))
    if len(results) == 2:
        mh, dc = results["mailhouse"], results["dovecot"]
        ratio = (mh["commands"] / mh["elapsed"]) / (dc["commands"] / dc["elapsed"])
        print(f"\nratio Mailhouse/Dovecot (commands/s): {ratio:.2f}x   (goal >= 1.5x)")
        per_round = [(r["commands"] - len(r["lat"].get("LOGIN", []))) / r["rounds_elapsed"] for r in (mh, dc)]
        print(f"ratio of the sync rounds alone (after every LOGIN): {per_round[0] / per_round[1]:.2f}x")
        if mh["rounds_cpu"] and dc["rounds_cpu"]:
            per_cpu = [(r["commands"] - len(r["lat"].get("LOGIN", []))) / r["rounds_cpu"] for r in (mh, dc)]
            print(f"ratio of commands per server CPU-second in the rounds: {per_cpu[0] / per_cpu[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
