"""Connection limits per client address, per account and per process (issue 12 item 5).

Three limits, checked when a connection is accepted or a login succeeds, each answered with the
protocol's clean refusal instead of a dropped or hanging connection:

* **per client address per service** (Postfix ``smtpd_client_connection_count_limit``): at most
  ``ConnectionPolicy.per_ip[service]`` simultaneous connections from one IPv4 address (or one IPv6
  /64, what one host or one customer holds) to one listener kind;
* **per account after login** (Dovecot ``mail_max_userip_connections``): at most ``per_user_ip``
  sessions of one account from one address per protocol family (imap, pop3), and ``per_account``
  from anywhere. The password is checked first, so the refusal leaks nothing a failed login
  would not;
* **per process** (a global cap): below ``RLIMIT_NOFILE`` with headroom (``max(MIN_HEADROOM,
  RLIMIT_NOFILE / 10)`` descriptors plus those open when the gate was made), so a fresh client
  still gets its refusal line and the listeners never run out of descriptors to accept with.

Counting across workers: with ``[server] workers = N`` the counts live in a :class:`CountTable`
mapped from a file in the data dir before the fork (``app._serve_workers``), so the per-address
and per-account limits hold however the kernel spreads connections over the workers. The table
is a fixed open-addressing hash of 64-bit keyed BLAKE2b tags (no address is stored in clear),
updated under ``lockf`` (released by the kernel if a worker dies). Clusters count per node: a
client spread over K nodes by a load balancer may hold K × the limit (docs: README).

Trusted networks (``[limits] trusted_networks``) are exempt from the per-address and per-account
limits; the per-process cap applies to everyone (it protects the process itself).

Invariants:

* Every admission is released exactly once (``Admission.release`` is idempotent; the runtime
  releases in ``connection_lost``), so counts never drift while the process lives.
* A key is counted only while its count is positive: a slot whose count drops to 0 is free.
* A table too crowded to place a key (``PROBE`` slots taken by other keys) admits the client and
  logs: the limits never refuse a client for a reason that is not its own.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import logging
import mmap
import os
import resource
import secrets
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mailhouse import metrics
from mailhouse.accounts.bans import normalise_ip
from mailhouse.config import Config, Network, address_in, parse_networks

log = logging.getLogger(__name__)

#: Postfix ``smtpd_client_connection_count_limit = 50``: a busy MTA opens a handful per site.
SMTP_PER_IP: Final = 50
#: Submission and mail access: one person's clients open a few each (Thunderbird up to 5 IMAP
#: connections per account); 30 (Mox's per-IP default) leaves room for a small office behind NAT.
CLIENT_PER_IP: Final = 30
#: POP3: one maildrop lock per account, so a client needs one connection; 20 covers a NAT.
POP3_PER_IP: Final = 20
#: HTTP: browsers open 6 connections per host; 64 covers a NAT'd office of webmail users.
HTTP_PER_IP: Final = 64
#: The defaults of ``[connections] per_ip`` by listener kind.
DEFAULT_PER_IP: Final[Mapping[str, int]] = {
    "smtp": SMTP_PER_IP,
    "submission": CLIENT_PER_IP,
    "submissions": CLIENT_PER_IP,
    "imap": CLIENT_PER_IP,
    "imaps": CLIENT_PER_IP,
    "pop3": POP3_PER_IP,
    "pop3s": POP3_PER_IP,
    "http": HTTP_PER_IP,
    "https": HTTP_PER_IP,
}
#: Dovecot ``mail_max_userip_connections = 10``: sessions of one account from one address.
PER_USER_IP: Final = 10
#: Sessions of one account from anywhere (phones, laptops, webmail-less clients of one person).
PER_ACCOUNT: Final = 50
#: Descriptors always kept free below RLIMIT_NOFILE (or 10 % of it, whichever is more): room to
#: accept a burst, answer a refusal line, open a database connection or a blob file.
MIN_HEADROOM: Final = 64
#: IPv6 clients are counted per /64: one host (or one customer's LAN) holds a whole /64.
IPV6_PREFIX: Final = 64

#: Seconds between two log lines about refused connections (a storm logs one line a second).
REFUSAL_LOG_INTERVAL: Final = 1.0

#: Slots of the shared table (16 octets each: 1 MiB) and how far a key may be placed from its home.
SLOTS: Final = 1 << 16
PROBE: Final = 32
_ENTRY = struct.Struct("<QI4x")  # tag (0 = never used), count


class Refusal(enum.Enum):
    """Why a connection or a login was refused (the adapter picks its reply line by it)."""

    PER_IP = "too many connections from this address"
    BUSY = "too many connections to this server"
    PER_ACCOUNT = "too many connections of this account"


class CountTable:
    """Counters keyed by bytes in shared memory: one per process, or one per ``serve`` with workers.

    ``CountTable()`` is private to the process; ``CountTable.shared(path)`` maps PATH (made anew)
    and is inherited by the workers forked afterwards, which take ``lockf`` around each update.
    """

    def __init__(self, path: Path | None = None) -> None:
        size = SLOTS * _ENTRY.size
        self._fd: int | None = None
        if path is None:
            self._mem = mmap.mmap(-1, size)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.ftruncate(fd, size)
            self._fd = fd
            self._mem = mmap.mmap(fd, size)
        self._secret = secrets.token_bytes(16)  # inherited by forked workers: the same tags

    @classmethod
    def shared(cls, path: Path) -> CountTable:
        return cls(path)

    def tag(self, key: bytes) -> int:
        t = int.from_bytes(hashlib.blake2b(key, digest_size=8, key=self._secret).digest(), "little")
        return t or 1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        fcntl.lockf(self._fd, fcntl.LOCK_EX)  # per process: a dead worker's lock is released
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _find(self, tag: int, place: bool) -> int | None:
        home = tag % SLOTS
        free = None
        for i in range(PROBE):
            slot = (home + i) % SLOTS
            t, n = _ENTRY.unpack_from(self._mem, slot * _ENTRY.size)
            if t == tag and n > 0:
                return slot
            if n == 0 and free is None:
                free = slot
        return free if place else None

    def count(self, key: bytes) -> int:
        with self._locked():
            slot = self._find(self.tag(key), place=False)
            return 0 if slot is None else int(_ENTRY.unpack_from(self._mem, slot * _ENTRY.size)[1])

    def acquire(self, limits: Iterable[tuple[bytes, int]]) -> int | None:
        """Count one more for every (key, limit) — all or none. Returns None when done, else the
        index of the first key already at its limit (nothing is counted then)."""
        pairs = [(self.tag(k), lim) for k, lim in limits]
        with self._locked():
            slots: list[int | None] = []
            for i, (tag, lim) in enumerate(pairs):
                slot = self._find(tag, place=True)
                if slot is not None:
                    n = _ENTRY.unpack_from(self._mem, slot * _ENTRY.size)[1]
                    if n >= lim:
                        return i
                slots.append(slot)
            for (tag, _), slot in zip(pairs, slots, strict=True):
                if slot is None:
                    log.warning("connection count table crowded: a key is not counted")
                    continue
                n = _ENTRY.unpack_from(self._mem, slot * _ENTRY.size)[1]
                _ENTRY.pack_into(self._mem, slot * _ENTRY.size, tag, n + 1)
        return None

    def release(self, keys: Iterable[bytes]) -> None:
        tags = [self.tag(k) for k in keys]
        with self._locked():
            for tag in tags:
                slot = self._find(tag, place=False)
                if slot is not None:
                    n = _ENTRY.unpack_from(self._mem, slot * _ENTRY.size)[1]
                    _ENTRY.pack_into(self._mem, slot * _ENTRY.size, tag, n - 1)


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """The configured limits (``[connections]`` and ``[limits] trusted_networks``); 0 = no limit."""

    per_ip: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PER_IP))
    per_user_ip: int = PER_USER_IP
    per_account: int = PER_ACCOUNT
    #: Connections per process; 0: ``RLIMIT_NOFILE`` minus headroom (the cap is never above that).
    max_connections: int = 0
    trusted: tuple[Network, ...] = ()


def policy_from_config(cfg: Config) -> ConnectionPolicy:
    """The policy of CFG: ``[connections]`` over the defaults, ``[limits] trusted_networks``."""
    return ConnectionPolicy(
        per_ip={**DEFAULT_PER_IP, **cfg.conn_per_ip},
        per_user_ip=cfg.conn_per_user_ip,
        per_account=cfg.conn_per_account,
        max_connections=cfg.max_connections,
        trusted=parse_networks(tuple(cfg.trusted_networks)),
    )


def client_key(ip: str) -> str:
    """The address a client is counted by: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64."""
    return normalise_ip(ip, IPV6_PREFIX)


def open_fds() -> int:
    """Descriptors this process has open now."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir used
    except OSError:
        return 0


class Admission:
    """What one connection or login holds in the counts; :meth:`release` gives it back (once)."""

    __slots__ = ("_gate", "_keys", "_process")

    def __init__(self, gate: ConnectionGate, keys: tuple[bytes, ...], process: bool) -> None:
        self._gate: ConnectionGate | None = gate
        self._keys = keys
        self._process = process

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._release(self._keys, self._process)


class ConnectionGate:
    """The node's connection limits: :meth:`admit` at accept, :meth:`admit_login` after a login.

    ``policy`` may be replaced (a configuration reload): new connections and logins get it.
    """

    def __init__(self, policy: ConnectionPolicy, table: CountTable | None = None) -> None:
        self.policy = policy
        self.table = table if table is not None else CountTable()
        self.active = 0  # connections of this process admitted and not released
        self._last_log = 0.0
        self._unlogged = 0  # refusals since the last log line
        self._baseline = open_fds()  # store, listeners, logs: what the process holds anyway

    def capacity(self) -> int:
        """Connections this process may hold: below RLIMIT_NOFILE with headroom (and the configured cap).

        Read per connection on purpose: the limit may be changed on the running process
        (``prlimit``), and getrlimit costs ~2 µs, under 0.1 % of a connection's CPU."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cap = self.policy.max_connections or (1 << 31)
        if soft != resource.RLIM_INFINITY:
            cap = min(cap, soft - max(MIN_HEADROOM, soft // 10) - self._baseline)
        return max(cap, 1)

    def trusted(self, ip: str) -> bool:
        return address_in(ip, self.policy.trusted)

    def admit(self, service: str, ip: str, *, per_ip: bool = True) -> Admission | Refusal:
        """A connection from IP to SERVICE (a ``[listen]`` key) was accepted: count it, or refuse.

        PER_IP False counts it against the process cap only (a trusted reverse proxy's connections)."""
        if self.active >= self.capacity():
            metrics.CONNECTIONS.labels(service, Refusal.BUSY.name.lower()).inc()
            return Refusal.BUSY
        keys: tuple[bytes, ...] = ()
        limit = self.policy.per_ip.get(service, 0) if per_ip else 0
        if limit > 0 and not self.trusted(ip):
            key = f"ip\0{service}\0{client_key(ip)}".encode()
            if self.table.acquire([(key, limit)]) is not None:
                metrics.CONNECTIONS.labels(service, "per-ip").inc()
                return Refusal.PER_IP
            keys = (key,)
        self.active += 1
        metrics.CONNECTIONS.labels(service, "accepted").inc()
        metrics.CONNECTIONS_OPEN.inc()
        return Admission(self, keys, True)

    def admit_login(self, family: str, account: str, ip: str) -> Admission | Refusal:
        """ACCOUNT logged in from IP over FAMILY ("imap", "pop3"): count it, or refuse."""
        p = self.policy
        if self.trusted(ip):
            return Admission(self, (), False)
        limits = []
        if p.per_user_ip > 0:
            limits.append((f"user-ip\0{family}\0{account}\0{client_key(ip)}".encode(), p.per_user_ip))
        if p.per_account > 0:
            limits.append((f"user\0{family}\0{account}".encode(), p.per_account))
        if limits and self.table.acquire(limits) is not None:
            return Refusal.PER_ACCOUNT
        return Admission(self, tuple(k for k, _ in limits), False)

    def note_refusal(self, what: str, ip: str, why: Refusal) -> None:
        """Log a refusal, at most one line per ``REFUSAL_LOG_INTERVAL`` (with how many were not logged)."""
        now = time.monotonic()
        if now - self._last_log < REFUSAL_LOG_INTERVAL:
            self._unlogged += 1
            return
        more = f" (and {self._unlogged} more refusals)" if self._unlogged else ""
        log.warning("%s from %s refused: %s%s", what, ip, why.value, more)
        self._last_log, self._unlogged = now, 0

    def _release(self, keys: tuple[bytes, ...], process: bool) -> None:
        if keys:
            self.table.release(keys)
        if process:
            self.active -= 1
            metrics.CONNECTIONS_OPEN.dec()


__all__ = [
    "DEFAULT_PER_IP",
    "Admission",
    "ConnectionGate",
    "ConnectionPolicy",
    "CountTable",
    "Refusal",
    "client_key",
    "policy_from_config",
]
