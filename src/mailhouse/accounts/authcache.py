"""Per-process cache of recently verified passwords (as Dovecot's ``auth_cache``).

argon2id costs ~0.2 s of CPU and 64 MiB per verification by design; a mail client that logs
in for every message it submits, or ten sessions opening at once, would spend more CPU on
that than on the mail. After a successful verification we remember, per account, the stored
hash it was checked against and an HMAC-SHA256 of the password under a random key that lives
only in this process's memory; a later login with the same password against the same stored
hash succeeds without argon2 until `TTL` runs out.

Invariants:
- only successes are cached: a wrong password always pays the full argon2 cost (and the
  throttle), so guessing is no cheaper and hits and misses tell nothing new;
- a password change (new stored hash) or removal of the account makes the entry useless at
  once, because the stored hash is read from the store on every login;
- the plaintext is never kept; the HMAC key never leaves the process; bounded in size.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

TTL = 3600.0  # seconds; Dovecot's auth_cache_ttl default
MAX_ENTRIES = 10_000

_key = os.urandom(32)
_cache: dict[str, tuple[str, bytes, float]] = {}  # address → (stored hash, HMAC, expiry)


def _mac(password: str) -> bytes:
    return hmac.new(_key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def hit(address: str, stored_hash: str, password: str) -> bool:
    """Was PASSWORD verified against STORED_HASH for ADDRESS within the TTL?"""
    entry = _cache.get(address)
    if entry is None:
        return False
    cached_hash, mac, expires = entry
    if time.monotonic() > expires or cached_hash != stored_hash:  # the stored hash is not a secret
        del _cache[address]
        return False
    return hmac.compare_digest(mac, _mac(password))


def remember(address: str, stored_hash: str, password: str, ttl: float = TTL) -> None:
    """Record a successful verification, good for TTL seconds."""
    if len(_cache) >= MAX_ENTRIES:
        _cache.clear()
    _cache[address] = (stored_hash, _mac(password), time.monotonic() + ttl)


def clear() -> None:
    _cache.clear()
