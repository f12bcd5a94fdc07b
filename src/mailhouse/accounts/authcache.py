"""Cache of recently verified passwords (as Dovecot's ``auth_cache``), one per node.

argon2id costs ~0.2 s of CPU and 64 MiB per verification by design; a mail client that logs
in for every message it submits, or ten sessions opening at once, would spend more CPU on
that than on the mail. After a successful verification we remember, per account, the stored
hash it was checked against and an HMAC-SHA256 of the password under a random key that lives
only in this object's memory; a later login with the same password against the same stored
hash succeeds without argon2 until `TTL` runs out.

The cache is held by its owner, the node's `accounts.auth.Authenticator` (built once per node
in `services.build`); there is no process-wide state here.

Invariants:
- only successes are cached: a wrong password always pays the full argon2 cost (and the
  throttle), so guessing is no cheaper and hits and misses tell nothing new;
- a password change (new stored hash) or removal of the account makes the entry useless at
  once, because the stored hash is read from the store on every login;
- the plaintext is never kept; the HMAC key never leaves the object; bounded in size.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable

TTL = 3600.0  # seconds; Dovecot's auth_cache_ttl default
MAX_ENTRIES = 10_000


class AuthCache:
    """Verified passwords, keyed by address; CLOCK is monotonic seconds (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._key = os.urandom(32)
        self._entries: dict[str, tuple[str, bytes, float]] = {}  # address → (stored hash, HMAC, expiry)

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def hit(self, address: str, stored_hash: str, password: str) -> bool:
        """Was PASSWORD verified against STORED_HASH for ADDRESS within the TTL?"""
        entry = self._entries.get(address)
        if entry is None:
            return False
        cached_hash, mac, expires = entry
        if self._clock() > expires or cached_hash != stored_hash:  # the stored hash is not a secret
            del self._entries[address]
            return False
        return hmac.compare_digest(mac, self._mac(password))

    def remember(self, address: str, stored_hash: str, password: str, ttl: float = TTL) -> None:
        """Record a successful verification, good for TTL seconds."""
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[address] = (stored_hash, self._mac(password), self._clock() + ttl)

    def clear(self) -> None:
        self._entries.clear()
