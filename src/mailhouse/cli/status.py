"""`mailhouse status`: version, nodes serving (with uptime), listeners, queue and store size.

Nodes come from their heartbeat marks in the store (runtime/beacon.py), so on PostgreSQL the
command shows the whole cluster from any machine; listeners are tried with a TCP connect from
here. Read-only: it never creates a store (cli/common.with_store).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

from mailhouse import __version__
from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.runtime.beacon import live_nodes
from mailhouse.web.common import human_size


def _duration(s: float) -> str:
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h}h {m}m" if d else f"{h}h {m}m" if h else f"{m}m {s}s"


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _db_size(path: str) -> int:
    """The SQLite file with its -wal and -shm companions."""
    db = Path(path).resolve()
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at HOST:PORT (wildcards tried on loopback)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((target, port), timeout=1.0):
            return True
    except OSError:
        return False


async def cmd_status(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        now = time.time()
        print(f"Mailhouse {__version__} — {cfg.hostname} (configuration: {cfg.source_path})")
        nodes = await live_nodes(store, now)
        print(f"Nodes serving: {len(nodes)}")
        for n in nodes:
            print(
                f"  {n.hostname} {n.node} pid {n.pid}, version {n.version}, up {_duration(now - n.started)}"
            )
        print("Listeners (from this machine):")
        for name, addrs in cfg.listen.items():
            for host, port in addrs:
                up = await asyncio.to_thread(listening, host, port)
                print(f"  {name:<12} {host}:{port}  {'listening' if up else 'not listening'}")
        queued, oldest = await store.queue_size()
        age = f", oldest {_duration(now - oldest)}" if oldest is not None else ""
        print(f"Queue: {queued} message(s){age}")
        domains = await store.list_domains()
        accounts = await store.list_accounts()
        print(f"Directory: {len(domains)} domain(s), {len(accounts)} account(s)")
        if cfg.store.startswith("sqlite://"):
            size = await asyncio.to_thread(_db_size, cfg.store.removeprefix("sqlite://"))
            blobs = await asyncio.to_thread(_tree_size, cfg.data_dir / "blobs")
            print(f"Store: SQLite {human_size(size)} + message files {human_size(blobs)} in {cfg.data_dir}")
        else:
            print(
                "Store: PostgreSQL (size: ask the database, e.g. SELECT pg_database_size(current_database()))"
            )
        return 0

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    sub.add_parser("status", help="version, nodes, listeners, queue and store size").set_defaults(
        fn=cmd_status
    )
