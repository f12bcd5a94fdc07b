"""Retry schedule of the outbound queue: exponential backoff, capped, within a lifetime.

Like Postfix (minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime): the
n-th retry waits `base * 2**(n-1)` seconds, never more than `maximum`, with ±10 % jitter
so messages deferred together do not all come back in the same second. RFC 5321
§4.5.4.1: retry interval at least 30 minutes is *suggested* for the Internet; the
defaults (300 s doubling to 4000 s) follow Postfix, and tests set small values.

Invariant: `next_attempt` never lies beyond `created + lifetime` — the last try is made
right at expiry, then the message bounces.
"""

from __future__ import annotations

import random

JITTER = 0.1  # fraction of the delay, either way


def backoff(attempts: int, base: float, maximum: float, jitter: float = JITTER) -> float:
    """Seconds to wait after the ATTEMPTS-th failed attempt (attempts ≥ 1)."""
    n = max(attempts, 1) - 1
    delay = min(base * float(2 ** min(n, 32)), maximum)
    if jitter:
        delay *= 1 + random.uniform(-jitter, jitter)
    return max(delay, 0.0)


def next_attempt(
    now: float,
    created: float,
    attempts: int,
    base: float,
    maximum: float,
    lifetime: float,
    jitter: float = JITTER,
) -> float:
    """When to try again, clamped to the expiry time."""
    return min(now + backoff(attempts, base, maximum, jitter), created + lifetime)


def expired(now: float, created: float, lifetime: float) -> bool:
    return now >= created + lifetime
