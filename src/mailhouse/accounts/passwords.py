"""Password hashing: argon2id (RFC 9106) via argon2-cffi, plus SCRAM-SHA-256 keys.

`PasswordHasher` (one per node, owned by the `Authenticator` built in `services.build`)
runs verifications off the event loop with a bounded number at once; the plain functions
below hash and verify synchronously (the CLI and the admin pages set passwords with them).

Invariant: plaintext passwords are never stored or logged; only the argon2id hash and,
for SCRAM (RFC 5802/7677), salt + StoredKey + ServerKey derived at set time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

from argon2 import PasswordHasher as Argon2Hasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailhouse.store.api import ScramKeys

# RFC 9106 §4 second recommended option (64 MiB, t=3, p=4) — argon2-cffi's defaults.
_hasher = Argon2Hasher()
SCRAM_ITERATIONS = 10_000  # RFC 7677 §4 recommends ≥ 4096; 10k is Dovecot's default too
# A real hash so that logins for unknown users spend the same time (no user enumeration). A
# constant, not hashed at import (that cost ~0.3 s at every `mailhouse` start); its parameters must
# equal the hasher's, or the timing would differ (tests/accounts/test_passwords.py checks that).
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$KOQv95HUCML3/F+FIMcnFA$E25vSHy8up4ZtHQDdEXrWIbARZGV3FbRRAV70QEcwEw"
)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# Each argon2id verification holds 64 MiB: at most this many run at once per process, so
# a burst of logins (or an attacker's) queues instead of exhausting memory.
MAX_CONCURRENT_VERIFICATIONS = max(2, os.cpu_count() or 1)


class PasswordHasher:
    """argon2id verification off the event loop, at most MAX_CONCURRENT verifications at once.

    One per node (its event loop): the semaphore binds to the loop that first waits on it.
    """

    def __init__(self, max_concurrent: int = MAX_CONCURRENT_VERIFICATIONS) -> None:
        self._slots = asyncio.Semaphore(max_concurrent)

    async def verify_async(self, stored_hash: str | None, password: str) -> bool:
        """argon2id costs ~50 ms of CPU and 64 MiB: run it off the event loop, bounded."""
        async with self._slots:
            return await asyncio.to_thread(verify_password, stored_hash, password)


def scram_keys(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> ScramKeys:
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)  # RFC 5802 §3 Hi()
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return ScramKeys(salt, iterations, stored_key, server_key)


def make_credentials(password: str) -> tuple[str, ScramKeys]:
    return hash_password(password), scram_keys(password)
