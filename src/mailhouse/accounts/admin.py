"""Directory administration shared by the CLI and the web admin: domains, users, aliases.

Validation (address syntax, IDNA) and side effects (DKIM keys on domain add) live here
so every face behaves the same.
"""

from __future__ import annotations

import secrets
import string

from mailhouse.accounts.addresses import AddressError, normalize_address, normalize_domain
from mailhouse.accounts.passwords import make_credentials
from mailhouse.mailauth import dkimkeys
from mailhouse.store.api import Account, Alias, Domain, NotFound, Store

MIN_PASSWORD = 8


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
        return d

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
        return await self.store.add_account(
            address,
            pw_hash,
            quota_bytes=quota_bytes,
            quota_messages=quota_messages,
            is_admin=is_admin,
            scram=scram,
        )

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
