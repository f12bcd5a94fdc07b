"""Shared benchmark helpers: process-tree memory, formatting."""

from __future__ import annotations

import os
from pathlib import Path


def _children(pid: int) -> list[int]:
    out = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").glob("*"))
    except OSError:  # the process ended while the tree was walked
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree_pids(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _status(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss(pid: int) -> int:
    """Sum of peak RSS (VmHWM) over a process and its descendants, in bytes."""
    return sum(_status(p, "VmHWM") for p in tree_pids(pid))


def rss(pid: int) -> int:
    return sum(_status(p, "VmRSS") for p in tree_pids(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants, in seconds (/proc/PID/stat
    utime and stime; sample before and after a run and take the difference)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while the tree was walked
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)
    return total / tick


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def cpu_count() -> int:
    return os.cpu_count() or 1
