"""Queue lease owners: who holds a queue entry, recognisable across a node's restarts.

An owner id is ``<node id>|<incarnation>|<pid>``:
- node id: ``<hostname>:<random id>``, the random id kept in ``<data_dir>/queue-node-id`` (created
  on first start), so it survives restarts and differs between machines even when they share a
  hostname (the public MX name) and a data_dir path (containers);
  nodes must therefore not share one data_dir (two nodes on one shared directory would count
  as one node and release each other's leases at start-up);
- incarnation: one per `mailhouse serve` run, fixed at import time so the forked workers of one
  run share it; it starts with the start time in milliseconds (12 hex digits), so incarnations of
  one node sort by age;
- pid: the worker process (for the operator; not used by the rules).

Invariants:
- A runner starting up releases every lease whose owner has its node id and another incarnation
  (`store.release_previous`): that incarnation is dead, since this run replaced it.
- A lease is dead when it has expired with the owner still set (the owner stopped renewing it; a
  clean end of a pass clears the owner), or when its owner is an older incarnation of a node
  whose newer incarnation is seen holding leases too.
"""

from __future__ import annotations

import enum
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

NODE_ID_FILE = "queue-node-id"
SEP = "|"  # never in a hostname or in the ids below


def new_incarnation(now: float | None = None) -> str:
    """A fresh incarnation id: start time in ms (12 hex digits), then 4 random hex digits."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{secrets.token_hex(2)}"


INCARNATION = new_incarnation()  # this `mailhouse serve` run (inherited by forked workers)


def node_id(hostname: str, data_dir: Path) -> str:
    """``hostname:<id kept in data_dir>``; a random one for this process if data_dir is not writable."""
    path = data_dir / NODE_ID_FILE
    try:
        nid = path.read_text().strip()
    except FileNotFoundError:
        nid = ""
    except OSError:
        return f"{hostname}:{secrets.token_hex(8)}"
    if not nid or SEP in nid:
        nid = secrets.token_hex(8)
        try:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(nid + "\n")
            os.replace(tmp, path)  # atomic: concurrent first starts of workers agree on one
            nid = path.read_text().strip()
        except OSError:
            pass
    return f"{hostname}:{nid}"


@dataclass(frozen=True, slots=True)
class Owner:
    node: str
    incarnation: str
    pid: int

    def __str__(self) -> str:
        return f"{self.node}{SEP}{self.incarnation}{SEP}{self.pid}"

    @property
    def node_prefix(self) -> str:
        """What every owner id of this node starts with."""
        return self.node + SEP

    @property
    def incarnation_prefix(self) -> str:
        """What every owner id of this node's current incarnation starts with."""
        return f"{self.node}{SEP}{self.incarnation}{SEP}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner named by TEXT; None for other shapes (older releases: ``host:pid:random``)."""
        parts = text.split(SEP)
        if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]))


class LeaseState(enum.Enum):
    FREE = "free"  # nobody holds the entry
    ACTIVE = "active"  # held by a live owner (its lease is being renewed)
    EXPIRED = "lease expired"  # dead owner: stopped renewing
    PREVIOUS = "previous incarnation"  # dead owner: its node has restarted since


def newest_incarnations(owners: Iterable[str]) -> dict[str, str]:
    """Node id → the newest incarnation among OWNERS."""
    newest: dict[str, str] = {}
    for text in owners:
        o = Owner.parse(text)
        if o is not None and o.incarnation > newest.get(o.node, ""):
            newest[o.node] = o.incarnation
    return newest


def lease_state(lease_owner: str, lease_until: float, now: float, newest: dict[str, str]) -> LeaseState:
    """The state of one entry's lease; NEWEST is `newest_incarnations` over every entry seen."""
    if lease_until <= now:
        return LeaseState.EXPIRED if lease_owner else LeaseState.FREE
    o = Owner.parse(lease_owner)
    if o is not None and o.incarnation < newest.get(o.node, ""):
        return LeaseState.PREVIOUS
    return LeaseState.ACTIVE
