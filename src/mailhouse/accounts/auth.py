"""Authentication service used by every protocol: password check behind the shared throttle.

One `Authenticator` per node (built in `services.build`) owns the node's login throttle
(`throttle.LoginThrottle`: per-IP serialisation, counts shared through the store, bans in
`bans.Bans`), its verified-password cache (`authcache.AuthCache`) and its bounded argon2id
verifier (`passwords.PasswordHasher`); SMTP AUTH, IMAP, POP3 and the webmail all call `check`
(or `sasl_flow.authenticate`, which uses the same gate), so a penalty or ban earned on one
protocol applies to the others, on every worker and node.

Invariants: a banned client is answered without its password being checked; the penalty is
waited before the check; every failure is logged once, in `throttle`'s one shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

from mailhouse.accounts.authcache import TTL, AuthCache
from mailhouse.accounts.bans import Bans
from mailhouse.accounts.passwords import PasswordHasher
from mailhouse.accounts.throttle import LoginThrottle
from mailhouse.config import AuthLimits
from mailhouse.store.api import Account, Store


class Authenticator:
    def __init__(
        self,
        store: Store,
        limiter: LoginThrottle | None = None,
        cache_ttl: float = TTL,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: AuthLimits | None = None,
        is_trusted: Callable[[str], bool] = lambda ip: False,
    ) -> None:
        self.store = store
        self.limiter = limiter if limiter is not None else LoginThrottle(store, limits, is_trusted=is_trusted)
        self.cache_ttl = cache_ttl  # [auth] cache_ttl: 0 = every login pays argon2id
        self.cache = AuthCache(clock)
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self._verifying: dict[bytes, asyncio.Future[bool]] = {}  # see _verify_once

    async def _verify_once(self, stored: str | None, password: str) -> bool:
        """argon2id of PASSWORD against STORED, shared by the checks of the same pair running at
        once: a client that opens ten connections to a worker whose cache is cold (issue 13 §2,
        ``--workers 2``) pays one verification, not ten queued behind the bounded verifier."""
        if stored is None:
            return await self.hasher.verify_async(stored, password)
        k = hashlib.sha256(stored.encode() + b"\0" + password.encode("utf-8", "surrogatepass")).digest()
        fut = self._verifying.get(k)
        if fut is None:
            fut = asyncio.ensure_future(self.hasher.verify_async(stored, password))
            self._verifying[k] = fut
            fut.add_done_callback(lambda _f: self._verifying.pop(k, None))
        return await asyncio.shield(fut)  # one waiter's cancellation leaves the others' check running

    @property
    def bans(self) -> Bans:
        """The node's ban list: every listener asks `bans.is_banned(ip)` at connect."""
        return self.limiter.bans

    async def check(self, username: str, password: str, ip: str, service: str = "other") -> Account | None:
        """Return the account if USERNAME/PASSWORD are right; waits the client's penalty first,
        refuses a banned client without checking. SERVICE names the protocol in the log line."""
        async with self.limiter.attempt(ip, username, service) as att:
            if att.refused:
                await att.failed(att.refused)
                return None
            acc = await self.store.get_account(username.strip().lower())
            stored = acc.password_hash if acc is not None else None
            # the verified-password cache (accounts/authcache.py) is keyed by address and stored hash
            key = acc.address if acc is not None and stored and self.cache_ttl > 0 else None
            if key is not None and stored and self.cache.hit(key, stored, password):
                ok = True  # verified against this very hash a moment ago
            else:
                ok = await self._verify_once(stored, password)
                if key is not None and stored and ok:
                    self.cache.remember(key, stored, password, self.cache_ttl)
            if acc is not None and ok:
                await att.succeeded()
                return acc
            await att.failed("password" if acc is not None else "unknown-user")
            return None
