"""Shared mailboxes and their rights, administered the same way from the CLI and the web admin.

A shared mailbox (``support@example.org``) is an account with no login (`store.acl.NO_LOGIN`):
mail is delivered to it like to any account (its INBOX, plus-addressing, aliases), and users
reach it over IMAP in the ``Shared/`` namespace with the rights its ACL gives them
(RFC 4314; rules in `store/acl.py`). Any account's folder can be shared the same way; users then
see it under ``Other Users/``.

Invariant: addresses are normalised here (`accounts.addresses`) before they reach the store, so
an identifier typed in another case or with an IDNA domain names the same account.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhouse.accounts.addresses import AddressError, normalize_address
from mailhouse.store.acl import ANYONE, NO_LOGIN, AclError, check_identifier
from mailhouse.store.api import Account, AclEntry, Mailbox, Store


class ShareError(Exception):
    """What the administrator asked for cannot be done (the message says why)."""


@dataclass(frozen=True, slots=True)
class FolderAcl:
    owner: str  # the owning account's address
    mailbox: Mailbox
    entries: list[AclEntry]


def _address(address: str) -> str:
    try:
        return normalize_address(address)
    except AddressError as e:
        raise ShareError(str(e)) from None


def _identifier(identifier: str) -> str:
    ident = identifier.strip()
    if ident.lower() == ANYONE:
        return ANYONE
    if ident.lower().startswith(ANYONE + "@"):
        return check_identifier(ident)
    return _address(ident)


async def create_shared_mailbox(store: Store, address: str) -> Account:
    address = _address(address)
    domain = address.rpartition("@")[2]
    if await store.get_domain(domain) is None:
        raise ShareError(f"domain {domain} is not hosted here; add it with `mailhouse domain add {domain}`")
    if await store.get_account(address) is not None:
        raise ShareError(f"{address} already exists")
    return await store.add_account(address, NO_LOGIN)


async def _folder(store: Store, owner: str, folder: str) -> Mailbox:
    acc = await store.get_account(_address(owner))
    if acc is None:
        raise ShareError(f"no account {owner}")
    name = "INBOX" if folder.upper() == "INBOX" else folder
    mb = await store.get_mailbox(acc.id, name)
    if mb is None:
        raise ShareError(f"{owner} has no folder {folder!r}")
    return mb


async def set_rights(store: Store, owner: str, folder: str, identifier: str, rights: str) -> str:
    """The rights IDENTIFIER holds on OWNER's FOLDER after RIGHTS (``+x``/``-x``/replace)."""
    mb = await _folder(store, owner, folder)
    try:
        return await store.set_acl(mb.id, _identifier(identifier), rights)
    except AclError as e:
        raise ShareError(str(e)) from None


async def remove_rights(store: Store, owner: str, folder: str, identifier: str) -> bool:
    mb = await _folder(store, owner, folder)
    try:
        return await store.delete_acl(mb.id, _identifier(identifier))
    except AclError as e:
        raise ShareError(str(e)) from None


async def list_rights(store: Store, owner: str, folder: str | None = None) -> list[FolderAcl]:
    """OWNER's folders (or just FOLDER) that have entries, with them."""
    if folder is not None:
        mb = await _folder(store, owner, folder)
        return [FolderAcl(_address(owner), mb, await store.get_acl(mb.id))]
    acc = await store.get_account(_address(owner))
    if acc is None:
        raise ShareError(f"no account {owner}")
    out = []
    for mb in await store.list_mailboxes(acc.id):
        entries = await store.get_acl(mb.id)
        if entries:
            out.append(FolderAcl(acc.address, mb, entries))
    return out
