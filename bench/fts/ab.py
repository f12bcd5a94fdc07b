"""A/B of ``SEARCH BODY word`` between this tree and a reference tree, on one kept mailbox.

``bench.fts.run --only mailhouse --dir D`` leaves a stored and backfilled mailbox in
``D/mailhouse``. This starts ``mailhouse serve`` twice, this tree's code on ``D/mailhouse``
and the reference tree's (``--reference``, e.g. ``git archive main | tar -x -C R``) on a copy
in ``D/mailhouse-ref``, and sends the same query words to both, alternating which goes first,
so both see the same machine load. Each round opens a new connection (SELECT, then the first
SEARCH builds what a session keeps); round 0 (3 words) only warms the servers' caches. The
result counts must agree. Printed per tree: p50/p99/max/mean and the first SEARCH after SELECT.

    .venv/bin/python -m bench.fts.ab --dir D --reference R [--queries 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from bench.fts.run import pct, search_once, vocabulary
from bench.imap.run import Client

EXTRA = "[auth]\nallow_plaintext = true\n[limits]\nsearch_time_budget = 3600\n"


def start(root: Path, src: Path) -> MailhouseProcess:
    mh = MailhouseProcess(root, services=("imap",), extra=EXTRA)
    base = mh.env()
    env = dict(base, PYTHONPATH=f"{src / 'src'}{os.pathsep}{src}")
    mh.env = lambda: env  # type: ignore[method-assign]
    return mh.start()


async def compare(servers: dict[str, MailhouseProcess], words: Sequence[str], rounds: int) -> None:
    res: dict[str, list[tuple[float, int, str, int]]] = {k: [] for k in servers}
    for rnd in range(rounds + 1):
        cs = {}
        for name, mh in servers.items():
            c = await Client.connect(*mh.addr("imap"))
            await c.login("user@example.org", PASSWORD)
            await c.cmd("SELECT INBOX")
            cs[name] = c
        for i, w in enumerate(words if rnd else words[:3]):
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            got = {}
            for name in order:
                t, n = await search_once(cs[name], b"S%d" % i, w)
                got[name] = n
                if rnd:
                    res[name].append((t, i, w, n))
            assert len(set(got.values())) == 1, (w, got)
        for c in cs.values():
            c.close()
    for name, xs in res.items():
        ts = [t for t, *_ in xs]
        first = ", ".join(f"{t * 1000:.0f}" for t, i, *_ in xs if i == 0)
        print(
            f"{name:10} n={len(ts)} p50 {pct(ts, 50) * 1000:.1f} ms  p99 {pct(ts, 99) * 1000:.1f} ms  "
            f"max {max(ts) * 1000:.1f} ms  mean {statistics.mean(ts) * 1000:.1f} ms; first after SELECT {first} ms"
        )
        print(
            "   slowest:", "; ".join(f"#{i} {w} {n} hits {t * 1000:.0f} ms" for t, i, w, n in sorted(xs)[-4:])
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, required=True, help="the --dir of a bench.fts.run")
    ap.add_argument("--reference", type=Path, required=True, help="the tree to compare with")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    ref = a.dir / "mailhouse-ref"
    if not ref.exists():
        shutil.copytree(
            a.dir / "mailhouse" / "data", ref / "data", ignore=shutil.ignore_patterns("*.writelock")
        )
    rng = random.Random(5)  # the words bench.fts.run asks
    band = vocabulary(13)[300:5000]
    words = [rng.choice(band) for _ in range(a.queries)]
    here = Path(__file__).resolve().parents[2]
    servers = {"this tree": start(a.dir / "mailhouse", here)}
    try:
        servers["reference"] = start(ref, a.reference.resolve())
        asyncio.run(compare(servers, words, a.rounds))
    finally:
        for mh in servers.values():
            mh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
