"""Authentication service used by every protocol: password check + shared throttle.

One `Authenticator` per node (built in `services.build`) owns the node's per-IP throttle
(`throttle.LoginThrottle`), its verified-password cache (`authcache.AuthCache`) and its
bounded argon2id verifier (`passwords.PasswordHasher`); SMTP AUTH, IMAP, POP3 and the
webmail all call `check`, so a penalty earned on one protocol applies to the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mailhouse.accounts.authcache import TTL, AuthCache
from mailhouse.accounts.passwords import PasswordHasher
from mailhouse.accounts.throttle import LoginThrottle
from mailhouse.store.api import Account, Store

log = logging.getLogger(__name__)


class Authenticator:
    def __init__(
        self,
        store: Store,
        limiter: LoginThrottle | None = None,
        cache_ttl: float = TTL,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.limiter = limiter if limiter is not None else LoginThrottle(clock)
        self.cache_ttl = cache_ttl  # [auth] cache_ttl: 0 = every login pays argon2id
        self.cache = AuthCache(clock)
        self.hasher = hasher if hasher is not None else PasswordHasher()

    async def check(self, username: str, password: str, ip: str) -> Account | None:
        """Return the account if USERNAME/PASSWORD are right; waits the per-IP penalty first."""
        await self.limiter.wait(ip)
        acc = await self.store.get_account(username.strip().lower())
        stored = acc.password_hash if acc is not None else None
        # the verified-password cache (accounts/authcache.py) is keyed by address and stored hash
        key = acc.address if acc is not None and stored and self.cache_ttl > 0 else None
        if key is not None and stored and self.cache.hit(key, stored, password):
            ok = True  # verified against this very hash a moment ago
        else:
            ok = await self.hasher.verify_async(stored, password)
            if key is not None and stored and ok:
                self.cache.remember(key, stored, password, self.cache_ttl)
        if acc is not None and ok:
            self.limiter.succeeded(ip)
            return acc
        self.limiter.failed(ip)
        log.info("authentication failed for ip=%s", ip)  # never the password, nor the username casing
        return None
