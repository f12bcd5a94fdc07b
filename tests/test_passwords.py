"""Password hashing: argon2id, and a bounded number of verifications at once."""

from __future__ import annotations

import asyncio
import threading

from mailhouse.accounts import passwords


def test_argon2id_hash_and_verify() -> None:
    h = passwords.hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert passwords.verify_password(h, "correct horse")
    assert not passwords.verify_password(h, "wrong")
    assert not passwords.verify_password(None, "anything")  # unknown user: same work, never true


async def test_concurrent_verifications_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    running = 0
    peak = 0
    lock = threading.Lock()

    def slow_verify(stored: str | None, pw: str) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.05)
        with lock:
            running -= 1
        return False

    monkeypatch.setattr(passwords, "verify_password", slow_verify)
    hasher = passwords.PasswordHasher()
    await asyncio.gather(*[hasher.verify_async("h", "p") for _ in range(20)])
    assert peak == passwords.MAX_CONCURRENT_VERIFICATIONS
