"""Banned client IPs, shared by every worker and node through the store (issue 12 item 7).

A ban is a store mark ``"ban:<ip>"`` (value: the reason) with an expiry, set by the login
throttle after ``[auth] ban_after`` failures from one IP within the failure window, or by
``mailhouse ban add``. A banned client's authentication attempts are refused at once, without
checking the password, and its new connections are refused at connect by every listener
(SMTP ``554 5.7.1``, IMAP ``* BYE``, POP3 ``-ERR``, HTTP 403): they all ask `Bans.is_banned`.

Invariants:
- clients in ``[limits] trusted_networks`` are never banned (`is_banned` is False for them);
- `is_banned` is on every accept path, so it answers from a small in-process cache
  (`CACHE_TTL` seconds, `MAX_CACHED` addresses); a ban made on this node is seen at once, one
  made elsewhere (another worker, node or the CLI) within `CACHE_TTL`, and so is a removal;
- a store that cannot be asked does not refuse connections (fail open: the login throttle,
  which needs the store too, then refuses the logins);
- addresses are normalised (`normalise_ip`): an IPv4-mapped IPv6 peer is its IPv4 address,
  IPv6 is compressed and without zone, so one client has one key whatever the listener saw.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailhouse import metrics
from mailhouse.store.api import Limits

log = logging.getLogger(__name__)

PREFIX = "ban:"  # store mark key: "ban:<normalised ip>"
CACHE_TTL = 3.0  # seconds a looked-up answer is reused on the accept paths
MAX_CACHED = 10_000  # cached answers; the cache is dropped whole beyond it (it refills from the store)


@dataclass(frozen=True, slots=True)
class Ban:
    ip: str
    until: float  # epoch seconds
    reason: str


@functools.lru_cache(maxsize=4096)  # per connection: parsing an address costs more than a lookup
def normalise_ip(ip: str, v6_prefix: int = 128) -> str:
    """One spelling per client address; a string that is not an address is returned as is.

    An IPv4-mapped IPv6 address is its IPv4 address; with V6_PREFIX below 128 another IPv6
    address is its /V6_PREFIX network (``2001:db8::/64``: what one host or one site holds, the
    connection limits' key). The one normaliser of the bans, the throttle and the connection gate.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        if v6_prefix < 128:
            return str(ipaddress.IPv6Network((addr, v6_prefix), strict=False))
    return str(addr)


def network_of(ip: str) -> str | None:
    """The client's aggregate: its /24 (IPv4) or /64 (IPv6, one site's prefix); None if no address."""
    try:
        addr = ipaddress.ip_address(normalise_ip(ip))
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Bans:
    """The node's view of the shared ban list; one per node (held by its `Authenticator`)."""

    def __init__(
        self,
        store: Limits,
        *,
        is_trusted: Callable[[str], bool] = lambda ip: False,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = CACHE_TTL,
    ) -> None:
        self.store = store
        self.is_trusted = is_trusted
        self._clock = clock  # wall-clock epoch seconds: marks expire at absolute times
        self._cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, float]] = {}  # ip → (answer valid until, ban until or 0)

    async def is_banned(self, ip: str) -> bool:
        """Whether IP is banned now (trusted networks never are); cached `CACHE_TTL` seconds."""
        if self.is_trusted(ip):
            return False
        ip = normalise_ip(ip)
        now = self._clock()
        hit = self._cache.get(ip)
        if hit is not None and hit[0] > now:
            return hit[1] > now
        try:
            mark = await self.store.get_mark(PREFIX + ip, now)
        except Exception as e:  # store outage: serve the connection (logins fail in the throttle)
            log.warning("ban check for %s failed (%s): not refused", ip, type(e).__name__)
            return False
        self._remember(ip, mark.expires if mark is not None else 0.0, now)
        return mark is not None

    def _remember(self, ip: str, until: float, now: float) -> None:
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[ip] = (now + self._cache_ttl, until)

    async def ban(self, ip: str, seconds: float, reason: str, failures: int | None = None) -> Ban:
        """Ban IP for SECONDS from now (replacing an earlier ban of it); logged for fail2ban and humans."""
        ip = normalise_ip(ip)
        now = self._clock()
        until = now + seconds
        await self.store.set_mark(PREFIX + ip, reason, until)
        self._remember(ip, until, now)
        metrics.BANS.labels("manual" if failures is None else "auto").inc()
        log.warning(
            "auth ban: ip=%s until=%s failures=%s reason=%s",
            ip,
            utc(until),
            failures if failures is not None else "-",
            reason.replace("\n", " ")[:200],
        )
        return Ban(ip, until, reason)

    async def unban(self, ip: str) -> bool:
        """Lift IP's ban; whether there was one."""
        ip = normalise_ip(ip)
        self._cache.pop(ip, None)
        return await self.store.remove_mark(PREFIX + ip)

    async def list(self) -> list[Ban]:
        """The bans in force, by address."""
        marks = await self.store.list_marks(PREFIX, self._clock())
        return [Ban(m.key[len(PREFIX) :], m.expires, m.value) for m in marks]
