"""Per-account sending limits against compromised accounts (issue 12 item 12): a send rate and
a recipients-per-day budget, for every authenticated face (submission on 587/465, the webmail).

Counted in the store's shared sliding windows (`api.Limits`), so every worker process and
every node of a cluster sees one account's sends together:
- ``send:<account id>`` — message transactions started (SMTP ``MAIL FROM``, one webmail send)
  in the last `SEND_WINDOW` seconds, at most ``[limits] send_rate``;
- ``rcpt:<account id>`` — recipients accepted in the last `RCPT_WINDOW` seconds (a day), at
  most ``[limits] recipients_per_day``.

Invariants:
- Refused attempts are not recorded (the window is read first, then the accepted event is
  counted), so a client retrying while over a limit gets in as soon as the window has room.
  Concurrent callers may overshoot a limit by at most their number (read-then-count).
- Clients in ``[limits] trusted_networks`` are exempt; a limit of 0 is off.
- Temporary replies only: the user's client keeps the message and retries later, so a
  legitimate burst is delayed, never lost (RFC 5321 §4.2.5: 4yz = try again).

Per-account overrides (``mailhouse user limits ADDRESS --send-rate N --recipients-per-day N``,
the web admin's domain page) replace the configured limit of one account (0: no limit there);
an absent value keeps ``[limits]``. They are a limits-store mark ``sendlimit:<id>:<created>``
that never expires (so every worker and node reads the same; the account's creation time in
the key keeps a later account that reuses the id from inheriting it); like every mark, ``store
copy`` does not carry them over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mailhouse.config import Config
from mailhouse.proto.smtp import Reply
from mailhouse.store.api import Account, Limits

#: Seconds of the send-rate window (``send_rate`` is per minute).
SEND_WINDOW: Final = 60.0
#: Seconds of the recipients window: a day.
RCPT_WINDOW: Final = 86400.0

#: RFC 3463 §3.8 X.7.1 "delivery not authorized, message refused" with 450 (RFC 5321 §4.2.3:
#: mailbox unavailable, temporary): the transaction is refused now and may be retried later.
SEND_RATE_EXCEEDED: Final = Reply(450, "4.7.1", "Sending rate limit exceeded, try again later")
#: RFC 5321 §4.5.3.1.10: 452 for "too many recipients" — the client retries the recipients not
#: accepted in a later transaction; RFC 3463 §3.6 X.5.3 "too many recipients". Temporary, so a
#: legitimate user's mail waits in the outbox instead of bouncing.
RECIPIENTS_EXCEEDED: Final = Reply(452, "4.5.3", "Daily recipient limit reached, try again later")


#: The expiry of an override mark: 9999-12-31T23:59:59Z, i.e. until an admin changes it.
NEVER: Final = 253402300799.0
_FIELDS: Final = ("send_rate", "recipients_per_day")


@dataclass(frozen=True, slots=True)
class SendOverrides:
    """An admin's limits for one account; None keeps the configured ``[limits]`` value."""

    send_rate: int | None = None
    recipients_per_day: int | None = None

    def encode(self) -> str:
        return " ".join(f"{k}={v}" for k in _FIELDS if (v := getattr(self, k)) is not None)

    @classmethod
    def decode(cls, value: str) -> SendOverrides:
        got: dict[str, int] = {}
        for part in value.split():
            k, _, v = part.partition("=")
            if k in _FIELDS and v.isdigit():
                got[k] = int(v)
        return cls(**got)


def override_key(account: Account) -> str:
    return f"sendlimit:{account.id}:{account.created:.6f}"


async def get_overrides(store: Limits, account: Account) -> SendOverrides:
    """ACCOUNT's overrides (none set: both None)."""
    mark = await store.get_mark(override_key(account), time.time())
    return SendOverrides() if mark is None else SendOverrides.decode(mark.value)


async def set_overrides(store: Limits, account: Account, overrides: SendOverrides) -> None:
    """Store ACCOUNT's overrides (both None: back to the configured limits)."""
    if overrides == SendOverrides():
        await store.remove_mark(override_key(account))
    else:
        await store.set_mark(override_key(account), overrides.encode(), NEVER)


class SendLimits:
    """The send-rate and recipients-per-day checks over the store's shared counters."""

    def __init__(self, store: Limits, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock

    def _exempt(self, ip: str) -> bool:
        return self.cfg.is_trusted(ip)

    async def _limit(self, account: Account, name: str) -> int:
        """ACCOUNT's limit NAME: the admin's override, else the configured one (0: none)."""
        got: int | None = getattr(await get_overrides(self.store, account), name)
        return int(getattr(self.cfg, name)) if got is None else got

    async def start_send(self, account: Account, ip: str) -> Reply | None:
        """One message transaction by ACCOUNT from IP: None (counted), or the refusal."""
        if self._exempt(ip):
            return None
        limit = await self._limit(account, "send_rate")
        if limit <= 0:
            return None
        key, now = f"send:{account.id}", self.clock()
        if await self.store.events_within(key, now, SEND_WINDOW) >= limit:
            return SEND_RATE_EXCEEDED
        await self.store.count_event(key, now, SEND_WINDOW)
        return None

    async def has_recipient_room(self, account: Account, ip: str, count: int = 1) -> bool:
        """Whether COUNT more recipients fit in ACCOUNT's daily budget (nothing recorded)."""
        if self._exempt(ip):
            return True
        limit = await self._limit(account, "recipients_per_day")
        if limit <= 0:
            return True
        used = await self.store.events_within(f"rcpt:{account.id}", self.clock(), RCPT_WINDOW)
        return used + count <= limit

    async def add_recipients(self, account: Account, ip: str, count: int = 1) -> None:
        """Record COUNT accepted recipients of ACCOUNT."""
        if self._exempt(ip) or count <= 0 or await self._limit(account, "recipients_per_day") <= 0:
            return
        await self.store.count_event(f"rcpt:{account.id}", self.clock(), RCPT_WINDOW, weight=count)
