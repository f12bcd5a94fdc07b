"""Per-user sender allow and block lists (issue 14 §3), kept in the store for every node.

An entry is a lower-case address (``friend@example.net``) or a domain (``example.net``, which
also covers its subdomains). The pipeline asks `UserLists.check(account_id, sender)`:

- the most specific entry wins: the address, then the domain, then each parent domain;
- `Verdict.ALLOW` / `Verdict.BLOCK`, or None when nothing matches (an empty or unparsable sender —
  the null reverse-path of bounces, RFC 5321 §4.5.5 — never matches).

Senders the user wrote to are allowed automatically (`remember_recipients`, called by the MSA for
each accepted submission), but never over an explicit BLOCK; "Not spam" in the webmail allows the
sender (`allow`). At most `MAX_AUTO_RECIPIENTS` recipients of one message are remembered.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from mailhouse.store.api import ListKind, SpamLearning

MAX_AUTO_RECIPIENTS = 100  # a mass mailing's recipients are not all friends; bound the writes
MAX_ENTRY = 320  # RFC 5321 §4.5.3.1: 64-octet local part + @ + 255-octet domain


class Verdict(enum.Enum):
    ALLOW = "allow"
    BLOCK = "block"


def normalize(entry: str) -> str | None:
    """The stored form of an address or domain entry, or None when it is not one."""
    e = entry.strip().strip("<>").strip().casefold().rstrip(".")
    if not e or len(e) > MAX_ENTRY or any(c.isspace() for c in e):
        return None
    if "@" in e:
        local, _, domain = e.rpartition("@")
        if not local or not domain or "." not in domain:
            return None
    elif "." not in e:
        return None
    return e


def candidates(sender: str) -> list[str]:
    """The entries that could match SENDER, most specific first."""
    e = normalize(sender)
    if e is None or "@" not in e:
        return []
    domain = e.rpartition("@")[2]
    labels = domain.split(".")
    return [e] + [".".join(labels[i:]) for i in range(len(labels) - 1)]


class UserLists:
    def __init__(self, store: SpamLearning) -> None:
        self.store = store

    async def check(self, account_id: int, sender: str) -> Verdict | None:
        cands = candidates(sender)
        if not cands:
            return None
        found = await self.store.sender_list_match(account_id, cands)
        for c in cands:
            if c in found:
                return Verdict.ALLOW if found[c] is ListKind.ALLOW else Verdict.BLOCK
        return None

    async def allow(self, account_id: int, entry: str) -> bool:
        return await self._set(account_id, entry, ListKind.ALLOW)

    async def block(self, account_id: int, entry: str) -> bool:
        return await self._set(account_id, entry, ListKind.BLOCK)

    async def remove(self, account_id: int, entry: str) -> bool:
        return await self._set(account_id, entry, None)

    async def entries(self, account_id: int) -> list[tuple[str, Verdict]]:
        return [
            (e, Verdict.ALLOW if k is ListKind.ALLOW else Verdict.BLOCK)
            for e, k in await self.store.sender_lists(account_id)
        ]

    async def remember_recipients(self, account_id: int, recipients: Iterable[str]) -> int:
        """Allow the addresses the user wrote to (not over their explicit entries); how many new."""
        addrs: list[str] = []
        for r in recipients:
            e = normalize(r)
            if e is not None and "@" in e and e not in addrs:
                addrs.append(e)
            if len(addrs) >= MAX_AUTO_RECIPIENTS:
                break
        if not addrs:
            return 0
        known = await self.store.sender_list_match(account_id, addrs)
        n = 0
        for a in addrs:
            if a not in known and await self.store.set_sender_list(account_id, a, ListKind.ALLOW):
                n += 1
        return n

    async def _set(self, account_id: int, entry: str, kind: ListKind | None) -> bool:
        e = normalize(entry)
        if e is None:
            raise ValueError(f"not an address or domain: {entry!r}")
        return await self.store.set_sender_list(account_id, e, kind)
