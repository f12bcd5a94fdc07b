"""Abuse benchmark (issue 12 item 13): 50 hostile connections at once against Mailhouse and, in
the same run, against Postfix + Dovecot, while a legitimate client keeps working.

Hostile connections (from 127.0.0.2, one attacking address; ``bench/abuse/workload.py``):
8 SMTP senders trickling one byte every 3 s, 4 + 4 + 4 idle connections on SMTP/IMAP/POP3,
6 anonymous senders of a 48 MB DATA, 6 pre-login ``a APPEND INBOX {40000000}``, 5 sessions
repeating ``SEARCH TEXT`` over 4 x 40 MB messages, 5 repeating ``FETCH n BODY.PEEK[]`` of them,
4 repeating POP3 ``RETR`` of one, and 4 webmail sessions opening a mail of 60,000 nested
``<div>`` (Mailhouse only: the reference has no webmail). Each slot reconnects when the server
refuses or closes it, until the attack ends.

The legitimate client (from 127.0.0.1, its own process) runs three loops side by side: SMTP
deliveries, IMAP LOGIN+SELECT+FETCH sessions, and NOOP round trips on a long-lived IMAP
connection.

Reported per server: peak RSS of the server's process trees (VmRSS summed over every process,
sampled every 100 ms from /proc; Postfix + Dovecot summed) and its PSS (every second), the
baseline before the attack, the legitimate client's p50/p99 latency and errors (overall and per operation), and the
hostile connections refused/closed/held per kind. A table on stdout and a JSON file.

Run from the repository root (about 4-5 min; ``--quick`` about 1 min)::

    .venv/bin/python -m bench.abuse.run [--quick] [--only mailhouse|reference] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.abuse.memory import Sampler
from bench.abuse.targets import Target, start_mailhouse, start_reference
from bench.abuse.workload import (
    DEFAULT,
    MIX,
    QUICK,
    WEB_ONLY,
    Endpoints,
    Profile,
    legit_child,
    legit_imap,
    run_hostile,
    scaled_mix,
)
from bench.common import mib

HOSTILE_SRC = "127.0.0.2"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))] if s else 0.0


async def _ready(ep: Endpoints, timeout: float = 60.0) -> None:
    """Wait until the legitimate user can log in (Dovecot's auth process starts lazily)."""
    end = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(legit_imap(ep), 30)
            return
        except Exception:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.5)


def attack(target: Target, p: Profile, mix: dict[str, int]) -> dict[str, Any]:
    ep = target.endpoints
    if ep.http is None:
        mix = {k: v for k, v in mix.items() if k not in WEB_ONLY}
    t_ready = time.perf_counter()
    asyncio.run(_ready(ep))
    print(
        f"{target.name}: first legitimate login after {time.perf_counter() - t_ready:.1f} s", file=sys.stderr
    )
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    legit_proc = ctx.Process(target=legit_child, args=(theirs, ep, p), name="abuse-legit", daemon=True)
    legit_proc.start()  # both processes start side by side
    sampler = Sampler(target.roots).start()
    try:
        if not mine.poll(120) or mine.recv() != "ready":
            raise RuntimeError("the legitimate client did not start")
        mine.send(time.time())  # the attack starts now, for both
        print(f"{target.name}: attack starts ({time.perf_counter() - t_ready:.1f} s)", file=sys.stderr)
        deadline = time.monotonic() + p.duration
        t0 = time.perf_counter()
        hostile = asyncio.run(run_hostile(ep, p, mix, HOSTILE_SRC, deadline))
        if not mine.poll(max(1.0, deadline - time.monotonic()) + 3 * p.op_timeout + 30):
            raise RuntimeError("the legitimate client did not finish")
        legit = mine.recv()
        print(f"{target.name}: attack over ({time.perf_counter() - t_ready:.1f} s)", file=sys.stderr)
        elapsed = time.perf_counter() - t0
    finally:
        legit_proc.join(10)
        if legit_proc.is_alive():
            legit_proc.kill()
            legit_proc.join()
    mem = sampler.stop()
    every = [x for xs in legit["lat"].values() for x in xs]
    return {
        "server": target.name,
        "notes": target.notes,
        "elapsed": elapsed,
        "memory": mem,
        "legit": {
            "ops": len(every),
            "p50": pct(every, 0.5),
            "p99": pct(every, 0.99),
            "max": max(every, default=0.0),
            "errors": sum(legit["errors"].values()),
            "by_op": {
                op: {
                    "ops": len(legit["lat"].get(op, [])),
                    "p50": pct(legit["lat"].get(op, []), 0.5),
                    "p99": pct(legit["lat"].get(op, []), 0.99),
                    "errors": legit["errors"].get(op, 0),
                    "first_error": legit["first_error"].get(op, ""),
                }
                for op in sorted(set(legit["lat"]) | set(legit["errors"]))
            },
        },
        "hostile": {
            "connections_at_once": sum(mix.values()),
            "by_kind": hostile,
            "conns": sum(h["conns"] for h in hostile.values()),
            "refused": sum(h["refused"] for h in hostile.values()),
            "closed": sum(h["closed"] for h in hostile.values()),
            "held": sum(h["held"] for h in hostile.values()),
        },
    }


def breakdown(
    results: list[dict[str, Any]], side: str, by: str, row: Callable[[str, dict[str, Any]], str]
) -> list[str]:
    """One report line per server and entry of ``result[SIDE][BY]``: ``  <server> <row(name, stats)>``."""
    return [f"  {r['server']:16} {row(name, st)}" for r in results for name, st in r[side][by].items()]


def _op_row(op: str, s: dict[str, Any]) -> str:
    err = f"  first: {s['first_error']}" if s["first_error"] else ""
    return f"{op:24} {s['ops']:>5} {s['p50'] * 1000:>8.0f} {s['p99'] * 1000:>8.0f} {s['errors']:>4}{err}"


def _kind_row(kind: str, t: dict[str, Any]) -> str:
    first = f"  first refusal: {t['first_refusal']}" if t["first_refusal"] else ""
    return (
        f"{kind:16} {t['conns']:>5} {t['refused']:>5} {t['closed']:>5} {t['held']:>5} {t['done']:>5}{first}"
    )


def table(results: list[dict[str, Any]], p: Profile) -> str:
    out = [
        f"abuse: {p.duration:g} s per server; DATA {p.data_size / 1e6:g} MB, APPEND literal "
        f"{p.literal_size / 1e6:g} MB, {p.big_count} x {p.big_size / 1e6:g} MB stored, {p.html_depth} nested <div>",
        "",
        f"{'server':18}{'hostile':>8}{'RSS before':>12}{'RSS peak':>12}{'PSS peak':>12}{'legit ops':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'refused':>9}{'closed':>8}{'held':>6}",
    ]
    for r in results:
        h, lg, m = r["hostile"], r["legit"], r["memory"]
        out.append(
            f"{r['server']:18}{h['connections_at_once']:>8}{mib(m['baseline_rss']):>12}{mib(m['peak_rss']):>12}{mib(m['peak_pss']):>12}"
            f"{lg['ops']:>10}{lg['p50'] * 1000:>9.0f}{lg['p99'] * 1000:>9.0f}{lg['errors']:>8}"
            f"{h['refused']:>9}{h['closed']:>8}{h['held']:>6}"
        )
    out += ["", "legitimate client by operation (ops, p50/p99 ms, errors):"]
    out += breakdown(results, "legit", "by_op", _op_row)
    out += ["", "hostile connections by kind (connections, refused, closed, held, abusive ops done):"]
    out += breakdown(results, "hostile", "by_kind", _kind_row)
    for r in results:
        for per, mm in r["memory"]["by_process_tree"].items():
            if per != r["server"]:
                out.append(
                    f"  {r['server']}: {per} peak RSS {mib(mm['peak_rss'])} (before {mib(mm['baseline_rss'])})"
                )
        wd = r.get("server_log", {}).get("watchdog")
        if wd:
            top = ", ".join(f"{w} x{n}" for w, n in wd["top"][:3])
            out.append(
                f"  {r['server']}: event loop blocked {wd['stalls']} times (> 100 ms), longest {wd['max_ms']} ms,"
                f" {wd['total_ms'] / 1000:.1f} s in all; most often in {top}"
            )
        for note in r["notes"]:
            out.append(f"  {r['server']}: {note}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="smaller sizes and 15 s of attack per server (~1 min)"
    )
    ap.add_argument("--only", choices=("mailhouse", "reference"), help="run one side only")
    ap.add_argument("--json", default="bench-abuse.json", help="where to write the JSON report")
    ap.add_argument("--hostile", type=int, default=sum(MIX.values()), help="hostile connections at once")
    ap.add_argument("--duration", type=float, help="seconds of attack per server")
    ap.add_argument("--data-size", type=int, help="octets of each anonymous DATA")
    ap.add_argument("--literal-size", type=int, help="octets announced by the pre-login APPEND literal")
    ap.add_argument("--big-size", type=int, help="octets of each stored big message")
    ap.add_argument("--big-count", type=int, help="big messages searched and fetched")
    ap.add_argument("--html-depth", type=int, help="nested <div> in the webmail mail")
    ap.add_argument("--kinds", help=f"comma-separated subset of the hostile kinds ({','.join(MIX)})")
    ap.add_argument("--keep", action="store_true", help="keep the servers' directories and logs")
    ap.add_argument("--op-timeout", type=float, help="legitimate client: seconds before an operation fails")
    a = ap.parse_args(argv)
    p = QUICK if a.quick else DEFAULT
    for f in ("duration", "data_size", "literal_size", "big_size", "big_count", "html_depth", "op_timeout"):
        if getattr(a, f) is not None:
            p = replace(p, **{f: getattr(a, f)})
    mix = scaled_mix(a.hostile)
    if a.kinds:
        wanted = a.kinds.split(",")
        if unknown := set(wanted) - set(MIX):
            ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
        mix = {k: n for k, n in mix.items() if k in wanted}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    results = []
    starters = {"mailhouse": start_mailhouse, "reference": start_reference}
    root = Path(tempfile.mkdtemp(prefix="bench-abuse-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        for name in [a.only] if a.only else ["mailhouse", "reference"]:
            t0 = time.perf_counter()
            target = starters[name](root / name, p, mix.get("pop3_retr", 1))
            print(f"{target.name}: started and loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            try:
                r = attack(target, p, mix)
            finally:
                t_stop = time.perf_counter()
                target.stop()
                print(f"{target.name}: stopped in {time.perf_counter() - t_stop:.1f} s", file=sys.stderr)
            r["server_log"] = target.diagnose() if target.diagnose else {}
            print(
                f"{target.name}: peak RSS {mib(r['memory']['peak_rss'])}, legit p99 "
                f"{r['legit']['p99'] * 1000:.0f} ms, {r['legit']['errors']} errors",
                file=sys.stderr,
            )
            results.append(r)
    finally:
        if a.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    report = {"profile": asdict(p), "mix": mix, "hostile_source": HOSTILE_SRC, "results": results}
    Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    print(table(results, p))
    print(f"\nJSON: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
