"""Recipient resolution for hosted domains: accounts, aliases, catch-all, plus-addressing.

Order (as Postfix virtual_alias_maps then virtual_mailbox_maps): exact alias → account →
plus-addressing (`user+tag@` → `user@`) → catch-all `@domain` alias. Aliases expand
recursively up to `MAX_ALIAS_DEPTH` with loop detection. A destination outside the
hosted domains is returned as remote (the queue forwards it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhouse.store.api import Account, Store

MAX_ALIAS_DEPTH = 10  # Postfix virtual_alias_recursion_limit = 1000; 10 is plenty here
MAX_EXPANSION = 1000  # Postfix virtual_alias_expansion_limit


@dataclass(slots=True)
class Resolution:
    local: list[Account] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.local and not self.remote


class Resolver:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def is_local_domain(self, domain: str) -> bool:
        return await self.store.get_domain(domain.lower().rstrip(".")) is not None

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
        aliases = await self.store.aliases_for(address)
        if aliases:
            for a in aliases:
                dest = a.destination.lower()
                if dest == address:  # alias to itself also keeps a copy in the mailbox
                    acc = await self.store.get_account(address)
                    if acc and acc.id not in {x.id for x in res.local}:
                        res.local.append(acc)
                    continue
                await self._expand(dest, res, seen, depth + 1)
            return
        acc = await self.store.get_account(address)
        if acc is None and "+" in local:
            base = local.split("+", 1)[0] + "@" + domain  # plus-addressing (RFC 5233 subaddress)
            if base not in seen:
                await self._expand(base, res, seen, depth + 1)
                return
        if acc is not None:
            if acc.id not in {x.id for x in res.local}:
                res.local.append(acc)
            return
        catch_all = await self.store.aliases_for("@" + domain)
        for a in catch_all:
            await self._expand(a.destination.lower(), res, seen, depth + 1)

    async def owned_addresses(self, account: Account) -> set[str]:
        """Addresses ACCOUNT may send as: its own and every alias pointing at it."""
        owned = {account.address}
        domain = account.address.rpartition("@")[2]
        for alias in await self.store.list_aliases(domain):
            if alias.destination.lower() == account.address and not alias.source.startswith("@"):
                owned.add(alias.source.lower())
        return owned
