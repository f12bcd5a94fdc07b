"""Failed-login throttling shared by every protocol, worker and node (issue 12 item 7).

SMTP AUTH, IMAP LOGIN/AUTHENTICATE, POP3 USER/PASS and AUTH, and the webmail login all pass
through `LoginThrottle.attempt` (via `accounts.auth.Authenticator` and `accounts.sasl_flow`).
Like Dovecot's auth_failure_delay and anvil penalty, and fail2ban's bans, with the counters in
the store (`store.api.Limits`) so every worker and node sees the same numbers:

- **Serialised per IP.** At most one authentication per client IP is pending on a node at a
  time (an `asyncio.Lock` per IP, at most `MAX_QUEUED_PER_IP` waiting, `MAX_TRACKED_IPS` IPs);
  the penalty is computed inside it from the shared counts, before the password is checked,
  so N parallel guesses take the sum of N penalties, not one.
- **Penalty.** ``failure_delay × 2^(n-1)`` for n failures, capped at ``max_failure_delay``;
  n is the largest of: the IP's failures; the account's failures (from any IP) beyond
  ``account_delay_after - 1``; the failures of the IP's /24 (IPv4) or /64 (IPv6) beyond
  ``network_delay_after - 1``. All within ``failure_window``. An account is only ever slowed,
  never locked out: its owner waits at most ``max_failure_delay``.
- **A success clears only its own pair.** A successful login of ACCOUNT from IP removes the
  failures of that (IP, account) pair from the IP, account and network counts (a negative
  event dated at the pair's first failure, so the counts never drop below the other pairs'
  failures) — never the failures the IP made against other accounts.
- **Bans.** ``ban_after`` failures from one IP within the window ban it for ``ban_time``
  (`accounts.bans`); a banned client's attempts are refused without checking the password.
- **Trusted networks** (``[limits] trusted_networks``) are neither delayed, counted nor banned.
- **One log shape** for every failure (fail2ban: see the README's security section), never the
  password: ``auth failed: service=imap ip=192.0.2.1 user=<bob@example.org> reason=password``.

Store keys (`Limits`): events ``authfail:ip:<ip>``, ``authfail:acct:<user>``,
``authfail:net:<cidr>``, ``authfail:pair:<ip>:<user>``; mark ``authfirst:<ip>:<user>`` (time of
the pair's first failure in the window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from mailhouse import metrics
from mailhouse.accounts.bans import Bans, network_of, normalise_ip
from mailhouse.config import AuthLimits
from mailhouse.log import safe
from mailhouse.store.api import Limits

log = logging.getLogger(__name__)

MAX_QUEUED_PER_IP = 64  # authentications of one IP waiting on one node; more are refused at once
MAX_TRACKED_IPS = 50_000  # IPs with an authentication pending on one node; more are refused at once
MAX_USER_KEY = 320  # octets of a user name kept in a key (RFC 5321 §4.5.3.1.3 path length ≈ 256)


def penalty(n: int, limits: AuthLimits) -> float:
    """Seconds to wait after N counted failures: 0, then base, doubling, capped."""
    if n <= 0:
        return 0.0
    return min(limits.max_failure_delay, limits.failure_delay * 2.0 ** min(n - 1, 62))


@dataclass(slots=True)
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders + waiters


@dataclass(slots=True)
class Attempt:
    """One authentication in progress; `refused` names why it was answered without a check."""

    throttle: LoginThrottle
    ip: str
    user: str
    service: str
    refused: str | None = None  # "banned" | "busy"
    exempt: bool = False  # trusted network: not counted
    delay: float = 0.0  # the penalty waited before the check
    done: bool = False

    async def succeeded(self) -> None:
        self.done = True
        if not self.exempt:
            await self.throttle.record_success(self.ip, self.user)

    async def failed(self, reason: str) -> None:
        self.done = True
        metrics.AUTH_FAILURES.labels(self.service, reason).inc()
        await self.throttle.record_failure(self, reason)


class LoginThrottle:
    """Per-IP serialisation and the shared failure counts; one per node (its `Authenticator`'s)."""

    def __init__(
        self,
        store: Limits,
        limits: AuthLimits | None = None,
        bans: Bans | None = None,
        *,
        is_trusted: Callable[[str], bool] = lambda ip: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limits = limits if limits is not None else AuthLimits()
        self.bans = bans if bans is not None else Bans(store, is_trusted=is_trusted, clock=clock)
        self.is_trusted = is_trusted
        self._clock = clock  # wall-clock epoch seconds: the store's events are dated with it
        self._slots: dict[str, _Slot] = {}

    # ---------------------------------------------------------------- the gate
    @asynccontextmanager
    async def attempt(self, ip: str, user: str, service: str) -> AsyncIterator[Attempt]:
        """Hold IP's slot and wait its penalty; the caller checks the password unless
        ``attempt.refused`` and then calls ``failed(reason)`` or ``succeeded()``."""
        ip = normalise_ip(ip)
        user = normalise_user(user)
        att = Attempt(self, ip, user, service)
        if self.is_trusted(ip):
            att.exempt = True
            yield att
            return
        if await self.bans.is_banned(ip):
            att.refused = "banned"
            yield att
            return
        slot = self._slots.get(ip)
        if slot is None:
            if len(self._slots) >= MAX_TRACKED_IPS:
                att.refused = "busy"
                yield att
                return
            slot = self._slots[ip] = _Slot()
        if slot.users >= MAX_QUEUED_PER_IP:
            att.refused = "busy"  # bounded: a flood of one IP's logins is answered at once
            yield att
            return
        slot.users += 1
        try:
            async with slot.lock:  # one pending authentication per client IP on this node
                if await self.bans.is_banned(ip):  # banned while we waited our turn
                    att.refused = "banned"
                else:
                    att.delay = await self.delay_for(ip, user)
                    if att.delay > 0:
                        await asyncio.sleep(att.delay)
                yield att
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(ip) is slot:
                del self._slots[ip]

    async def delay_for(self, ip: str, user: str) -> float:
        """The penalty before checking USER's password from IP, from the shared counts."""
        lim, now = self.limits, self._clock()
        w = lim.failure_window
        ip_n, acct_n, net_n = await asyncio.gather(
            self.store.events_within(_ip_key(ip), now, w),
            self.store.events_within(_acct_key(user), now, w),
            self._net_count(ip, now),
        )
        n = ip_n
        if lim.account_delay_after:
            n = max(n, acct_n - lim.account_delay_after + 1)
        if lim.network_delay_after:
            n = max(n, net_n - lim.network_delay_after + 1)
        return penalty(n, lim)

    async def _net_count(self, ip: str, now: float) -> int:
        net = network_of(ip)
        if net is None or not self.limits.network_delay_after:
            return 0
        return await self.store.events_within(_net_key(net), now, self.limits.failure_window)

    # ---------------------------------------------------------------- outcomes
    async def record_failure(self, att: Attempt, reason: str) -> None:
        """Count a failure (unless exempt or refused), log it in the one shape, ban if due."""
        # the fail2ban line: fixed fields first, the untrusted user name escaped and last but reason
        log.info(
            "auth failed: service=%s ip=%s user=<%s> reason=%s",
            att.service,
            att.ip,
            safe(att.user, 100).replace(">", "\\x3e"),
            att.refused or reason,
        )
        if att.exempt or att.refused:
            return
        lim, now = self.limits, self._clock()
        w = lim.failure_window
        net = network_of(att.ip)
        counts = [
            self.store.count_event(_ip_key(att.ip), now, w),
            self.store.count_event(_acct_key(att.user), now, w),
            self.store.count_event(_pair_key(att.ip, att.user), now, w),
        ]
        if net is not None and lim.network_delay_after:
            counts.append(self.store.count_event(_net_key(net), now, w))
        ip_n, _, pair_n, *_ = await asyncio.gather(*counts)
        if pair_n == 1:  # the pair's first failure in the window: when its contribution starts
            await self.store.set_mark(_first_key(att.ip, att.user), repr(now), now + w)
        if lim.ban_after and ip_n >= lim.ban_after:
            await self.bans.ban(att.ip, lim.ban_time, f"{ip_n} failed logins", failures=ip_n)

    async def record_success(self, ip: str, user: str) -> None:
        """Remove the (IP, USER) pair's failures from the counts; the IP's others stay."""
        lim, now = self.limits, self._clock()
        w = lim.failure_window
        pair = _pair_key(ip, user)
        n = await self.store.events_within(pair, now, w)
        if n <= 0:
            return  # the common case: one quick read
        first = await self.store.get_mark(_first_key(ip, user), now)
        if first is not None:
            # dated at the pair's first failure: it expires no later than any failure it cancels
            t0 = float(first.value)
            keys = [_ip_key(ip), _acct_key(user)]
            net = network_of(ip)
            if net is not None and lim.network_delay_after:
                keys.append(_net_key(net))
            await asyncio.gather(*(self.store.count_event(k, t0, w, -n) for k in keys))
        await self.store.clear_events(pair)
        await self.store.remove_mark(_first_key(ip, user))


def normalise_user(user: str) -> str:
    return user.strip().lower()[:MAX_USER_KEY]


# keys are built from normalised values whatever the caller passed (one client, one account: one key)
def _ip_key(ip: str) -> str:
    return f"authfail:ip:{normalise_ip(ip)}"


def _acct_key(user: str) -> str:
    return f"authfail:acct:{normalise_user(user)}"


def _net_key(net: str) -> str:
    return f"authfail:net:{net}"


def _pair_key(ip: str, user: str) -> str:
    return f"authfail:pair:{normalise_ip(ip)}:{normalise_user(user)}"


def _first_key(ip: str, user: str) -> str:
    return f"authfirst:{normalise_ip(ip)}:{normalise_user(user)}"
