"""What the evaluator needs from its caller (delivery): the message, the envelope, lookups.

:class:`SieveContext` is a Protocol; :class:`SimpleContext` is a ready implementation over plain
values (tests, `mailhouse sieve test`, and the delivery helper can wrap its own).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["SieveContext", "SimpleContext"]


class SieveContext(Protocol):
    @property
    def message(self) -> bytes:
        """The raw message (RFC 5322 octets, CRLF or LF)."""
        ...

    @property
    def envelope_from(self) -> str:
        """MAIL FROM without <>; "" for the null reverse-path."""
        ...

    @property
    def envelope_to(self) -> str:
        """The final recipient (RCPT TO after alias expansion), with its +detail."""
        ...

    @property
    def original_recipient(self) -> str:
        """The recipient as the sender wrote it (RFC 3461 ORCPT or RCPT TO)."""
        ...

    @property
    def user_addresses(self) -> Sequence[str]:
        """Every address of the user (vacation "is it addressed to me", RFC 5230 §4.5)."""
        ...

    @property
    def spam_percent(self) -> int | None:
        """RFC 5235: 0 (surely ham) .. 100 (surely spam); None when the message was not tested."""
        ...

    @property
    def virus_level(self) -> int | None:
        """RFC 5235 §3.3: 1 (clean) .. 5 (virus); None when not tested."""
        ...

    @property
    def environment(self) -> Mapping[str, str]:
        """RFC 5183 items: domain, host, location, phase, remote-host, remote-ip (name/version added)."""
        ...

    @property
    def now(self) -> dt.datetime:
        """Current time, timezone-aware, in the user's zone (RFC 5260 §4 default zone)."""
        ...

    async def mailbox_exists(self, name: str) -> bool: ...

    async def mailboxid_exists(self, mailboxid: str) -> bool: ...

    async def duplicate(self, key: str, seconds: int, *, last: bool) -> bool:
        """RFC 7352: was ``key`` seen within ``seconds`` (``last``: since the last time it was seen)?"""
        ...


@dataclass(slots=True)
class SimpleContext:
    message: bytes
    envelope_from: str = ""
    envelope_to: str = ""
    original_recipient: str = ""
    user_addresses: Sequence[str] = ()
    spam_percent: int | None = None
    virus_level: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).astimezone())
    mailboxes: set[str] = field(default_factory=lambda: {"INBOX"})
    mailboxids: set[str] = field(default_factory=set)
    seen_keys: set[str] = field(default_factory=set)

    async def mailbox_exists(self, name: str) -> bool:
        return name in self.mailboxes or name.upper() == "INBOX"

    async def mailboxid_exists(self, mailboxid: str) -> bool:
        return mailboxid in self.mailboxids

    async def duplicate(self, key: str, seconds: int, *, last: bool) -> bool:
        return key in self.seen_keys
