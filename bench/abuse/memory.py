"""Memory of the servers under attack, sampled from /proc in a process of its own.

``Sampler(roots).start()`` sums VmRSS over each root process's tree every 100 ms and the PSS
of all trees (shared pages divided among the processes that map them, from smaps_rollup)
every tenth sample: a forking server's RSS sum counts its shared pages once per process, so
PSS is the fair figure for Postfix + Dovecot. It runs in its own process so that the
attackers' asyncio loop in the benchmark's process does not starve it of the GIL;
``stop()`` returns the baseline (taken at start), the peaks, the sample count and the mean
interval actually achieved on the loaded machine.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.common import tree_pids

INTERVAL = 0.1
PSS_EVERY = 10


def _kib(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def sample(roots: dict[str, int], pss: bool = False) -> tuple[dict[str, int], int, int]:
    """({root: VmRSS summed over its tree}, PSS of every tree or 0 when not asked, processes)."""
    trees = {k: tree_pids(pid) for k, pid in roots.items()}
    rss = {k: sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids) for k, pids in trees.items()}
    total_pss = 0
    if pss:
        total_pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for pids in trees.values() for p in pids)
    return rss, total_pss, sum(map(len, trees.values()))


def _child(conn: Connection, roots: dict[str, int], interval: float) -> None:
    baseline, baseline_pss, _ = sample(roots, pss=True)
    peak = dict(baseline)
    peak_total, peak_pss, peak_procs, samples = sum(baseline.values()), baseline_pss, 0, 0
    t0 = time.monotonic()
    conn.send("ready")
    while not conn.poll(interval):  # "stop" ends it
        now, pss, procs = sample(roots, pss=samples % PSS_EVERY == 0)
        for k, v in now.items():
            peak[k] = max(peak[k], v)
        peak_total = max(peak_total, sum(now.values()))
        peak_pss = max(peak_pss, pss)
        peak_procs = max(peak_procs, procs)
        samples += 1
    conn.send(
        {
            "baseline_rss": sum(baseline.values()),
            "peak_rss": peak_total,
            "baseline_pss": baseline_pss,
            "peak_pss": peak_pss,
            "by_process_tree": {k: {"baseline_rss": baseline[k], "peak_rss": peak[k]} for k in roots},
            "peak_processes": peak_procs,
            "samples": samples,
            "mean_interval": (time.monotonic() - t0) / max(1, samples),
        }
    )


class Sampler:
    def __init__(self, roots: dict[str, int], interval: float = INTERVAL) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(theirs, roots, interval), name="abuse-rss", daemon=True)

    def start(self) -> Sampler:
        self._proc.start()
        if not self._conn.poll(60) or self._conn.recv() != "ready":
            raise RuntimeError("the memory sampler did not start")
        return self

    def stop(self) -> dict[str, Any]:
        self._conn.send("stop")
        result: dict[str, Any] = self._conn.recv()
        self._proc.join(10)
        return result
