"""`mailhouse ban list|add IP [--for SECONDS] [--reason TEXT]|remove IP`: the shared ban list.

Acts on the store directly (every worker and node reads the same marks), so it works while
`mailhouse serve` runs: a running node notices an added or removed ban within
`accounts.bans.CACHE_TTL` seconds. Bans made by the login throttle (``[auth] ban_after``)
are listed and removed the same way. An address in ``[limits] trusted_networks`` can be
listed but is never refused.
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from typing import Any

from mailhouse import config as config_mod
from mailhouse.accounts.bans import Bans, normalise_ip, utc
from mailhouse.cli.common import with_store

DEFAULT_REASON = "added by the administrator"


def _address(ip: str | None, action: str) -> str:
    if not ip:
        raise ValueError(f"ban {action} needs an IP address")
    try:
        ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"{ip!r} is not an IP address") from None
    return normalise_ip(ip)


async def cmd_ban(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        bans = Bans(store, is_trusted=cfg.is_trusted)
        if args.action == "list":
            now = time.time()
            for b in await bans.list():
                left = max(0, int(b.until - now))
                print(f"{b.ip}  until {utc(b.until)} ({left}s)  {b.reason}")
            return 0
        ip = _address(args.ip, args.action)
        if args.action == "add":
            seconds = args.seconds if args.seconds is not None else cfg.auth_limits.ban_time
            if seconds <= 0:
                raise ValueError("--for needs a positive number of seconds")
            b = await bans.ban(ip, seconds, args.reason or DEFAULT_REASON)
            note = " (in trusted_networks: it will not be refused)" if cfg.is_trusted(ip) else ""
            print(f"{b.ip} banned until {utc(b.until)}{note}")
            return 0
        if await bans.unban(ip):  # remove
            print(f"{ip} unbanned")
            return 0
        print(f"mailhouse: {ip} is not banned")
        return 1

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    b = sub.add_parser("ban", help="banned client addresses (login failures; shared by all nodes)")
    b.add_argument("action", choices=["list", "add", "remove"])
    b.add_argument("ip", nargs="?", help="client IP address (add, remove)")
    b.add_argument("--for", dest="seconds", type=float, help="seconds (default: [auth] ban_time)")
    b.add_argument("--reason", help="shown by ban list")
    b.set_defaults(fn=cmd_ban)
