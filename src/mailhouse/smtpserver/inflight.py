"""The per-process cap on SMTP message octets in flight (issue 12 item 2).

Every SMTP session of a process reserves the octets of the message it is receiving from the
first chunk until the transaction ends (delivered, refused or dropped): spooled to disk or
still in memory. `InflightBudget` is that process-wide count against ``[limits]
max_inflight_bytes`` (`config.Config.max_inflight_bytes`). A MAIL FROM whose ``SIZE=`` would
cross it, or a DATA/BDAT transfer that does, is answered ``452 4.3.1`` (RFC 5321 §4.5.3.1.10
"insufficient system storage", RFC 3463 X.3.1 "mail system full"); the message is dropped and
the session goes on, so the client may retry later.

Invariants: ``used`` never exceeds the limit through `take`; every `take` is matched by a
`give` of the same octets when the session's transaction ends (the session keeps its own count).
"""

from __future__ import annotations

from collections.abc import Callable

from mailhouse.proto.smtp import Reply

#: RFC 5321 §4.5.3.1.10 / RFC 3463 X.3.1: temporary, the client may try again later.
REPLY_INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")


class InflightBudget:
    """Message octets held by this process's SMTP sessions; LIMIT is read on each check (reload)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self.used = 0

    def would_exceed(self, octets: int) -> bool:
        """Would OCTETS more cross the limit? (MAIL FROM SIZE=, RFC 1870 §6.2)"""
        return self.used + octets > self._limit()

    def take(self, octets: int) -> bool:
        """Reserve OCTETS; False (nothing reserved) when that would cross the limit."""
        if self.used + octets > self._limit():
            return False
        self.used += octets
        return True

    def give(self, octets: int) -> None:
        self.used -= octets
