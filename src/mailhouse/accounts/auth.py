"""Authentication service used by every protocol: password check + shared throttle."""

from __future__ import annotations

import logging

from mailhouse.accounts import authcache
from mailhouse.accounts.passwords import verify_password_async
from mailhouse.accounts.throttle import LoginThrottle, throttle
from mailhouse.store.api import Account, Store

log = logging.getLogger(__name__)


class Authenticator:
    def __init__(self, store: Store, limiter: LoginThrottle = throttle, cache_ttl: float = authcache.TTL) -> None:
        self.store = store
        self.limiter = limiter
        self.cache_ttl = cache_ttl  # [auth] cache_ttl: 0 = every login pays argon2id

    async def check(self, username: str, password: str, ip: str) -> Account | None:
        """Return the account if USERNAME/PASSWORD are right; waits the per-IP penalty first."""
        await self.limiter.wait(ip)
        acc = await self.store.get_account(username.strip().lower())
        stored = acc.password_hash if acc is not None else None
        # the verified-password cache (accounts/authcache.py) is keyed by address and stored hash
        key = acc.address if acc is not None and stored and self.cache_ttl > 0 else None
        if key is not None and stored and authcache.hit(key, stored, password):
            ok = True  # verified against this very hash a moment ago
        else:
            ok = await verify_password_async(stored, password)
            if key is not None and stored and ok:
                authcache.remember(key, stored, password, self.cache_ttl)
        if acc is not None and ok:
            self.limiter.succeeded(ip)
            return acc
        self.limiter.failed(ip)
        log.info("authentication failed for ip=%s", ip)  # never the password, nor the username casing
        return None
