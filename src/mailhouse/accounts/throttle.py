"""Failed-login throttling shared by every protocol (SMTP AUTH, IMAP, POP3, webmail).

Per client IP: each failure within `WINDOW` doubles the delay applied before the next
answer (0.5 s, 1 s, 2 s … capped at `MAX_DELAY`), like Dovecot's auth_failure_delay and
anvil penalty. Success clears the IP. State is per node (held by the node's `Authenticator`)
and bounded (`MAX_TRACKED`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

WINDOW = 900.0  # seconds a failure is remembered
BASE_DELAY = 0.5
MAX_DELAY = 15.0
MAX_TRACKED = 100_000  # IPs remembered; the oldest are forgotten first


class LoginThrottle:
    """Per-IP failure counts; one per node (the `Authenticator` every protocol shares owns it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fails: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def delay_for(self, ip: str) -> float:
        entry = self._fails.get(ip)
        if not entry:
            return 0.0
        count, last = entry
        if self._clock() - last > WINDOW:
            del self._fails[ip]
            return 0.0
        return min(MAX_DELAY, BASE_DELAY * 2.0 ** (count - 1))

    def failed(self, ip: str) -> None:
        count, _ = self._fails.pop(ip, (0, 0.0))
        self._fails[ip] = (count + 1, self._clock())
        while len(self._fails) > MAX_TRACKED:
            self._fails.popitem(last=False)

    def succeeded(self, ip: str) -> None:
        self._fails.pop(ip, None)

    async def wait(self, ip: str) -> None:
        d = self.delay_for(ip)
        if d:
            await asyncio.sleep(d)
