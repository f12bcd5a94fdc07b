"""Greylisting (RFC 6647) at RCPT on port 25: an unknown (client network, sender, recipient) triplet
is deferred with ``451 4.7.1`` until it comes back after ``[spam] greylist_delay`` seconds.

Why at RCPT and not after DATA: the triplet is per recipient and needs nothing from the message,
and RCPT is the first point where it is complete (RFC 6647 describes greylisting at the SMTP
command level), so the deferral costs the sender no upload and us no spooling or scoring. A
message for several recipients may get ``250`` for some and ``451`` for others; the sender
retries the deferred ones later (RFC 5321 §4.5.4.1), as with any per-recipient 4xx.

State is the store's shared expiring marks (`store/limits.py`, no new table), so every worker and
every node on one store see the same triplets (issue 14 §3: "triplets in the store, shared across
nodes"):

- ``greylist:<net>|<sender>|<recipient>`` — first seen (epoch seconds); kept
  ``greylist_expire`` seconds: a retry after that starts over;
- ``greylist-pass:<net>`` — the client network once retried correctly; kept ``greylist_pass_ttl``
  seconds, renewed (at most once a day) while it keeps sending: a known-good sender is not
  greylisted again for any sender or recipient (postgrey's auto-allow-listing of clients).

The network is the client's /24 (IPv4) or /64 (IPv6): big senders retry from another address of the
same pool (postgrey compares /24 networks by default for the same reason). Exempt (decided here):
``[limits]``/``[spam] trusted_networks``, clients on a ``[spam] dnswl`` allow list; authenticated
submission is never greylisted (the session calls this only on port 25 without a user).

Invariants: a store or DNS error never defers mail (fail open, logged); only passes are cached
in the process (a triplet's state must be read from the store, where the other nodes write it);
the cache holds at most `MAX_CACHED` networks.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from mailhouse.accounts.bans import network_of
from mailhouse.config import Config, address_in, parse_networks
from mailhouse.proto.smtp import Reply
from mailhouse.spam.dnslists import listed_in_allow_lists
from mailhouse.spam.lookup import Lookup
from mailhouse.store.api import Limits

log = logging.getLogger(__name__)

__all__ = ["DNSWL_TIMEOUT", "MAX_CACHED", "Greylist", "Outcome", "client_network", "deferral"]

#: Networks with a remembered pass cached per process (bounded under a flood of one-off clients).
MAX_CACHED = 65536
#: Seconds the DNSWL exemption may wait at RCPT (the answer is cached for the scoring after DATA).
DNSWL_TIMEOUT = 1.0
#: A pass is renewed in the store at most this often (one write a day per sending network).
RENEW_EVERY = 86400.0


class Outcome(enum.Enum):
    PASS = "pass"  # known network, retried triplet, or exempt
    DEFER = "defer"  # 451 4.7.1: come back after the delay


def client_network(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) of IP as text (the login throttle's aggregate); IP itself if it
    does not parse."""
    return network_of(ip) or ip


def deferral(wait: float) -> Reply:
    """``451 4.7.1`` (RFC 3463 X.7.1: delivery not authorized; 4xx: try again later)."""
    return Reply(451, "4.7.1", f"Greylisted, please try again in {max(1, round(wait))} seconds")


class Greylist:
    """The triplets of one node (`[spam] greylisting`); CLOCK is epoch seconds (the marks' clock)."""

    def __init__(
        self, store: Limits, cfg: Config, lookup: Lookup, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._cfg = cfg
        self._lookup = lookup
        self._clock = clock
        self._passed: dict[str, float] = {}  # network → pass expiry (epoch seconds)

    @property
    def enabled(self) -> bool:
        return self._cfg.spam.greylisting

    def _exempt_network(self, ip: str) -> bool:
        s = self._cfg.spam
        return self._cfg.is_trusted(ip) or (
            bool(s.trusted_networks) and address_in(ip, parse_networks(s.trusted_networks))
        )

    async def check(self, ip: str, sender: str, recipient: str) -> tuple[Outcome, Reply | None]:
        """Whether mail from IP with envelope SENDER may go to RECIPIENT now; the reply if not."""
        if not self.enabled or self._exempt_network(ip):
            return Outcome.PASS, None
        s = self._cfg.spam
        net = client_network(ip)
        now = self._clock()
        if self._passed.get(net, 0.0) > now:
            return Outcome.PASS, None
        try:
            passed = await self._store.get_mark(f"greylist-pass:{net}", now)
            if passed is not None:
                self._remember(net, passed.expires)
                if passed.expires - now < s.greylist_pass_ttl - RENEW_EVERY:
                    await self._pass(net, now)
                return Outcome.PASS, None
            if s.dnswl and await listed_in_allow_lists(self._lookup, ip, s.dnswl, DNSWL_TIMEOUT):
                return Outcome.PASS, None
            key = f"greylist:{net}|{sender.lower()}|{recipient.lower()}"
            seen = await self._store.get_mark(key, now)
            if seen is None:
                # first attempt of this triplet: remember it, defer (451: try again later)
                await self._store.set_mark(key, repr(now), now + s.greylist_expire)
                log.info("greylist: new triplet %s from=<%s> to=<%s>: deferred", net, sender, recipient)
                return Outcome.DEFER, deferral(s.greylist_delay)
            first = float(seen.value)
            if now - first < s.greylist_delay:  # a retry too soon is deferred again
                return Outcome.DEFER, deferral(first + s.greylist_delay - now)
            await self._pass(net, now)
            await self._store.remove_mark(key)
            log.info("greylist: %s retried after %.0f s: passed", net, now - first)
            return Outcome.PASS, None
        except Exception:
            log.exception("greylist: store unavailable for %s; not greylisting", ip)
            return Outcome.PASS, None

    async def _pass(self, net: str, now: float) -> None:
        expires = now + self._cfg.spam.greylist_pass_ttl
        self._remember(net, expires)
        await self._store.set_mark(f"greylist-pass:{net}", repr(now), expires)

    def _remember(self, net: str, expires: float) -> None:
        if len(self._passed) >= MAX_CACHED and net not in self._passed:
            self._passed.clear()
        # read the store again after a day at most, so a sending network's pass gets renewed
        self._passed[net] = min(expires, self._clock() + RENEW_EVERY)
