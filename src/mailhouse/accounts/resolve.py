"""Recipient resolution for hosted domains: accounts, aliases, catch-all, plus-addressing.

Order (as Postfix virtual_alias_maps then virtual_mailbox_maps): exact alias → account →
plus-addressing (`user+tag@` → `user@`) → catch-all `@domain` alias. Aliases expand
recursively up to `MAX_ALIAS_DEPTH` with loop detection. A destination outside the
hosted domains is returned as remote (the queue forwards it).

Lookups are cached per process and the whole cache is dropped whenever the store's
directory generation changes (bumped by the store on any change to domains, accounts,
aliases or mailbox names, from any process), checked at most every `GEN_CHECK_INTERVAL`.
The submission path's look-ups live here too: the addresses an account may send as, and a
domain's DKIM keys (which do not bump the generation, so they also expire after
`DKIM_KEYS_TTL`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailhouse.store.api import Account, Alias, DkimKey, Store

MAX_ALIAS_DEPTH = 10  # Postfix virtual_alias_recursion_limit = 1000; 10 is plenty here
MAX_EXPANSION = 1000  # Postfix virtual_alias_expansion_limit
GEN_CHECK_INTERVAL = 0.1  # seconds: how stale a cached directory answer may be
MAX_CACHED = 100_000  # entries per cache before it is simply cleared
DKIM_KEYS_TTL = 10.0  # seconds a domain's cached DKIM keys are used (key changes do not bump the generation)


@dataclass(slots=True)
class Resolution:
    local: list[Account] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.local and not self.remote


class Resolver:
    """The node's cached directory look-ups; CLOCK is monotonic seconds (injectable for tests)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock
        self._gen = -1
        self._checked = float("-inf")  # the first look-up checks the generation
        self._domains: dict[str, bool] = {}
        self._aliases: dict[str, list[Alias]] = {}
        self._accounts: dict[str, Account | None] = {}
        self._mailboxes: dict[tuple[int, str], int | None] = {}
        self._owned: dict[str, frozenset[str]] = {}
        self._dkim: dict[str, tuple[float, list[DkimKey]]] = {}

    async def _fresh(self) -> None:
        now = self._clock()
        if now - self._checked < GEN_CHECK_INTERVAL:
            return
        self._checked = now
        gen = await self.store.directory_generation()
        caches: tuple[dict[Any, Any], ...] = (
            self._domains,
            self._aliases,
            self._accounts,
            self._mailboxes,
            self._owned,
            self._dkim,
        )
        if gen != self._gen or sum(len(c) for c in caches) > MAX_CACHED:
            self._gen = gen
            for cache in caches:
                cache.clear()

    async def is_local_domain(self, domain: str) -> bool:
        await self._fresh()
        domain = domain.lower().rstrip(".")
        hit = self._domains.get(domain)
        if hit is None:
            hit = self._domains[domain] = await self.store.get_domain(domain) is not None
        return hit

    async def account(self, address: str) -> Account | None:
        await self._fresh()
        if address not in self._accounts:
            self._accounts[address] = await self.store.get_account(address)
        return self._accounts[address]

    async def aliases_for(self, source: str) -> list[Alias]:
        await self._fresh()
        if source not in self._aliases:
            self._aliases[source] = await self.store.aliases_for(source)
        return self._aliases[source]

    async def mailbox_id(self, account_id: int, name: str) -> int | None:
        """The id of an account's mailbox NAME (cached; INBOX on every delivery)."""
        await self._fresh()
        key = (account_id, name)
        if key not in self._mailboxes:
            mb = await self.store.get_mailbox(account_id, name)
            self._mailboxes[key] = mb.id if mb else None
        return self._mailboxes[key]

    async def resolve(self, address: str) -> Resolution:
        """Expand ADDRESS (in a hosted domain) to accounts and remote addresses."""
        res = Resolution()
        seen: set[str] = set()
        await self._expand(address.lower(), res, seen, 0)
        return res

    async def _expand(self, address: str, res: Resolution, seen: set[str], depth: int) -> None:
        if address in seen or depth > MAX_ALIAS_DEPTH or len(seen) > MAX_EXPANSION:
            return
        seen.add(address)
        local, _, domain = address.rpartition("@")
        if not await self.is_local_domain(domain):
            res.remote.append(address)
            return
        aliases = await self.aliases_for(address)
        if aliases:
            for a in aliases:
                dest = a.destination.lower()
                if dest == address:  # alias to itself also keeps a copy in the mailbox
                    acc = await self.account(address)
                    if acc and acc.id not in {x.id for x in res.local}:
                        res.local.append(acc)
                    continue
                await self._expand(dest, res, seen, depth + 1)
            return
        acc = await self.account(address)
        if acc is None and "+" in local:
            base = local.split("+", 1)[0] + "@" + domain  # plus-addressing (RFC 5233 subaddress)
            if base not in seen:
                await self._expand(base, res, seen, depth + 1)
                return
        if acc is not None:
            if acc.id not in {x.id for x in res.local}:
                res.local.append(acc)
            return
        catch_all = await self.aliases_for("@" + domain)
        for a in catch_all:
            await self._expand(a.destination.lower(), res, seen, depth + 1)

    async def owned_addresses(self, account: Account) -> frozenset[str]:
        """Addresses ACCOUNT may send as: its own and every alias pointing at it (cached)."""
        await self._fresh()
        owned = self._owned.get(account.address)
        if owned is None:
            found = {account.address}
            for alias in await self.store.list_aliases():
                if alias.destination.lower() == account.address and not alias.source.startswith("@"):
                    found.add(alias.source.lower())
            owned = self._owned[account.address] = frozenset(found)
        return owned

    async def dkim_keys(self, domain: str) -> list[DkimKey]:
        """DOMAIN's DKIM signing keys (cached for at most `DKIM_KEYS_TTL`)."""
        await self._fresh()
        now = self._clock()
        hit = self._dkim.get(domain)
        if hit is None or now - hit[0] > DKIM_KEYS_TTL:
            hit = self._dkim[domain] = (now, await self.store.get_dkim_keys(domain))
        return hit[1]
