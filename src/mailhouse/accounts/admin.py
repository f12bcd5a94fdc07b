"""Directory administration shared by the CLI and the web admin: domains, users, aliases.

Validation (address syntax, IDNA) and side effects (DKIM keys on domain add) live here
so every face behaves the same.

Role addresses: RFC 5321 §4.5.1 requires `postmaster@` for every domain, and RFC 2142 §2 names
`abuse@`; the DMARC and TLS-RPT records `mailhouse dns` advises send reports to postmaster@.
A new domain gets both as aliases of the first admin account (and a domain made before any
admin gets them when the first admin is created). They are ordinary aliases: change or
remove them; an account created under a role address replaces its alias.
"""

from __future__ import annotations

import secrets
import string

from mailhouse.accounts.addresses import AddressError, normalize_address, normalize_domain
from mailhouse.accounts.passwords import make_credentials
from mailhouse.mailauth import dkimkeys
from mailhouse.store.api import Account, Alias, Domain, NotFound, Store

MIN_PASSWORD = 8
ROLE_LOCAL_PARTS = ("postmaster", "abuse")  # RFC 5321 §4.5.1, RFC 2142 §2


class AdminError(Exception):
    pass


def generate_password(length: int = 20) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Admin:
    def __init__(self, store: Store, dkim_selector: str = "mailhouse") -> None:
        self.store = store
        self.dkim_selector = dkim_selector

    async def add_domain(self, name: str) -> Domain:
        try:
            name = normalize_domain(name)
        except AddressError as e:
            raise AdminError(str(e)) from None
        d = await self.store.add_domain(name)
        for key in dkimkeys.generate(name, self.dkim_selector):
            await self.store.set_dkim_key(key)
        await self.ensure_role_aliases([d.name])
        return d

    async def ensure_role_aliases(self, domains: list[str] | None = None) -> list[Alias]:
        """Alias postmaster@ and abuse@ of DOMAINS (default: every domain) to the first admin,
        where neither an account nor an alias has the address; the aliases made."""
        admins = sorted((a for a in await self.store.list_accounts() if a.is_admin), key=lambda a: a.id)
        if not admins:
            return []
        made = []
        for domain in domains if domains is not None else [d.name for d in await self.store.list_domains()]:
            taken = {a.source for a in await self.store.list_aliases(domain)}
            for local in ROLE_LOCAL_PARTS:
                address = f"{local}@{domain}"
                if address in taken or await self.store.get_account(address) is not None:
                    continue
                made.append(await self.store.add_alias(address, admins[0].address))
        return made

    async def add_user(
        self,
        address: str,
        password: str,
        *,
        quota_bytes: int = 0,
        quota_messages: int = 0,
        is_admin: bool = False,
    ) -> Account:
        try:
            address = normalize_address(address)
        except AddressError as e:
            raise AdminError(str(e)) from None
        if len(password) < MIN_PASSWORD:
            raise AdminError(f"password too short: at least {MIN_PASSWORD} characters")
        domain = address.rpartition("@")[2]
        if await self.store.get_domain(domain) is None:
            raise AdminError(
                f"domain {domain} is not hosted here; add it with `mailhouse domain add {domain}`"
            )
        pw_hash, scram = make_credentials(password)
        local = address.rpartition("@")[0]
        if local in ROLE_LOCAL_PARTS:
            # an alias would take the account's mail (aliases resolve first): the account replaces it
            for a in await self.store.list_aliases(domain):
                if a.source == address:
                    await self.store.remove_alias(address, None)
                    break
        acc = await self.store.add_account(
            address,
            pw_hash,
            quota_bytes=quota_bytes,
            quota_messages=quota_messages,
            is_admin=is_admin,
            scram=scram,
        )
        if is_admin:
            await self.ensure_role_aliases()  # domains made before the first admin
        return acc

    async def set_password(self, address: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise AdminError(f"password too short: at least {MIN_PASSWORD} characters")
        pw_hash, scram = make_credentials(password)
        try:
            await self.store.set_password(normalize_address(address), pw_hash, scram)
        except AddressError as e:
            raise AdminError(str(e)) from None

    async def add_alias(self, source: str, destination: str) -> Alias:
        try:
            if source.startswith("@"):
                source = "@" + normalize_domain(source[1:])  # catch-all
            else:
                source = normalize_address(source)
            destination = normalize_address(destination)
        except AddressError as e:
            raise AdminError(str(e)) from None
        try:
            return await self.store.add_alias(source, destination)
        except NotFound as e:
            raise AdminError(str(e)) from None
