"""`mailhouse queue list|show ID|retry [ID]|delete ID`: the outbound queue, live.

Acts on the store directly (SQLite WAL and PostgreSQL are multi-process safe), so it
works while `mailhouse serve` runs: the runner polls the store about twice a second and
picks up `retry` at once. An entry being delivered right now (leased) is not touched by
`retry`; `delete` removes it anyway and the runner's final update then finds no row.
An entry whose owner is dead (its lease expired unrenewed, or the owner is an earlier
incarnation of a node that has restarted: `queue.owner`) is listed as ``dead``; a runner
takes it over at its next poll (expired) or the node released it at start-up.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.queue.owner import LeaseState, lease_state, newest_incarnations
from mailhouse.queue.status import DEFERRED, OPEN, PENDING
from mailhouse.store.api import QueueEntry


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _state(e: QueueEntry, now: float, newest: dict[str, str]) -> str:
    lease = lease_state(e.lease_owner, e.lease_until, now, newest)
    if lease is LeaseState.ACTIVE:
        return "active"
    if lease in (LeaseState.EXPIRED, LeaseState.PREVIOUS):
        return "dead"
    return DEFERRED if e.attempts else PENDING


def _line(e: QueueEntry, now: float, newest: dict[str, str] | None = None) -> str:
    open_ = [r for r in e.recipients if r.status in OPEN]
    state = _state(e, now, newest or {})
    nxt = "now" if e.next_attempt <= now else "in " + _age(e.next_attempt - now)
    return (
        f"{e.id}  {e.size:>8}  {_age(now - e.created):>4}  {state:<8}  next {nxt:<8}  "
        f"<{e.sender}>  {len(open_)}/{len(e.recipients)} open"
    )


async def cmd_queue(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        now = time.time()
        if args.action == "list":
            entries = await store.list()
            if not entries:
                print("queue is empty")
                return 0
            print(f"{'ID':<12}  {'SIZE':>8}  {'AGE':>4}  {'STATE':<8}  NEXT           SENDER  RECIPIENTS")
            newest = newest_incarnations(e.lease_owner for e in entries)
            for e in entries:
                print(_line(e, now, newest))
                lease = lease_state(e.lease_owner, e.lease_until, now, newest)
                if lease in (LeaseState.EXPIRED, LeaseState.PREVIOUS):
                    print(f"    owner {e.lease_owner} is dead ({lease.value})")
                for r in e.recipients:
                    if r.status in OPEN:
                        print(f"    {r.address}  {r.status}  {r.last_reply}")
            print(f"-- {len(entries)} message(s), {sum(e.size for e in entries)} octets")
            return 0
        if args.action in ("show", "delete") and not args.id:
            print(f"mailhouse: queue {args.action} needs an ID")
            return 2
        if args.action == "show":
            e = await store.get(args.id.upper())
            if e is None:
                print(f"mailhouse: no queue entry {args.id}")
                return 1
            print(f"id:           {e.id}")
            print(f"sender:       <{e.sender}>")
            print(f"size:         {e.size}")
            print(
                f"created:      {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.created))} ({_age(now - e.created)} ago)"
            )
            print(f"attempts:     {e.attempts}")
            print(f"next attempt: {'now' if e.next_attempt <= now else 'in ' + _age(e.next_attempt - now)}")
            print(f"delay warned: {'yes' if e.warned else 'no'}")
            newest = newest_incarnations(x.lease_owner for x in await store.list())
            lease = lease_state(e.lease_owner, e.lease_until, now, newest)
            if lease is LeaseState.ACTIVE:
                print(f"being delivered by {e.lease_owner}")
            elif lease is not LeaseState.FREE:
                print(f"leased by {e.lease_owner}: dead owner ({lease.value})")
            if e.ret or e.envid:
                print(f"dsn:          RET={e.ret or '-'} ENVID={e.envid or '-'}")
            print("recipients:")
            for r in e.recipients:
                extra = f" NOTIFY={r.notify}" if r.notify else ""
                print(f"  {r.address}  {r.status}{extra}  {r.last_reply}")
            return 0
        if args.action == "retry":
            entries = [await store.get(args.id.upper())] if args.id else await store.list()
            newest = newest_incarnations(x.lease_owner for x in await store.list())
            n = 0
            for e in entries:
                if e is None:
                    print(f"mailhouse: no queue entry {args.id}")
                    return 1
                if lease_state(e.lease_owner, e.lease_until, now, newest) is LeaseState.ACTIVE:
                    continue  # being delivered right now (a dead owner's entry is retried)
                e.next_attempt = now
                await store.update(e)
                n += 1
            print(f"{n} message(s) scheduled for immediate delivery")
            return 0
        if args.action == "delete":
            await store.remove(args.id.upper())  # NotFound → "mailhouse: …" exit 1 in cli.main
            print(f"{args.id.upper()} deleted")
            return 0
        return 2

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    q = sub.add_parser("queue", help="the outbound mail queue (live)")
    q.add_argument("action", choices=["list", "show", "retry", "delete"])
    q.add_argument("id", nargs="?", help="queue ID (retry without ID: everything)")
    q.set_defaults(fn=cmd_queue)
