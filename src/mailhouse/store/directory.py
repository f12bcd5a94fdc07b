"""Directory rules (domains, accounts, aliases), written once over the backend primitives.

Invariants:
- A domain with accounts cannot be removed; removing a domain removes its aliases and DKIM keys.
- A new account gets the special-use mailboxes (RFC 6154 §2) of `api.SPECIAL_MAILBOXES`,
  subscribed, in the transaction that creates it.
- Removing an account removes its mailboxes, messages and metadata in one transaction, tells
  subscribers that each mailbox went away, and frees the blobs nothing references any more.
- Accounts and aliases are only added under a hosted domain (checked under a share lock, so a
  concurrent domain removal waits).
"""

from __future__ import annotations

import time

from mailhouse.store.api import (
    SPECIAL_MAILBOXES,
    Account,
    Alias,
    AlreadyExists,
    Change,
    ChangeKind,
    Domain,
    NotFound,
    ScramKeys,
)
from mailhouse.store.backend import Tx
from mailhouse.store.mail import create_mailbox, free_blobs


async def add_domain(tx: Tx, name: str) -> Domain:
    return await tx.insert_domain(name, time.time())


async def remove_domain(tx: Tx, name: str) -> None:
    did = await tx.domain_id(name, for_update=True)
    if did is None:
        raise NotFound(f"domain {name} does not exist")
    n = await tx.count_accounts(did)
    if n:
        raise AlreadyExists(f"domain {name} still has {n} account(s); remove them first")
    await tx.delete_domain(did, name)


async def add_account(
    tx: Tx,
    address: str,
    password_hash: str,
    quota_bytes: int,
    quota_messages: int,
    is_admin: bool,
    scram: ScramKeys | None,
) -> Account:
    domain = address.rpartition("@")[2]
    now = time.time()
    did = await tx.domain_id(domain, lock=True)
    if did is None:
        raise NotFound(f"domain {domain} is not hosted here")
    acc = await tx.insert_account(
        address, did, password_hash, quota_bytes, quota_messages, is_admin, scram, now
    )
    for name, use in SPECIAL_MAILBOXES:
        await create_mailbox(tx, acc, name, use, publish=False)
        await tx.set_subscription(acc, name, True)
    return Account(acc, address, did, password_hash, quota_bytes, quota_messages, is_admin, scram, now)


async def set_password(tx: Tx, address: str, password_hash: str, scram: ScramKeys | None) -> None:
    if not await tx.set_password(address, password_hash, scram):
        raise NotFound(f"account {address} does not exist")
    acc = await tx.account_id(address)
    if acc is not None:  # a new password ends every webmail session (store/websessions.py)
        await tx.delete_web_sessions(acc, "", None)


async def set_quota(tx: Tx, address: str, quota_bytes: int, quota_messages: int) -> None:
    if not await tx.set_quota(address, quota_bytes, quota_messages):
        raise NotFound(f"account {address} does not exist")


async def remove_account(tx: Tx, address: str) -> list[str]:
    """Returns the blob keys now unreferenced."""
    acc = await tx.account_id(address)
    if acc is None:
        raise NotFound(f"account {address} does not exist")
    ids = await tx.mailbox_ids(acc)
    await tx.lock_mailboxes(ids)
    keys = await tx.delete_account(acc, ids)
    await tx.drop_acl(ids, address.lower(), acc)  # store/acl.py: its mailboxes' entries and those naming it
    for mid in ids:  # IDLE/NOTIFY sessions of the account learn that their mailbox is gone
        await tx.publish(Change(acc, mid, ChangeKind.MAILBOX, 0))
    return await free_blobs(tx, set(keys))


async def add_alias(tx: Tx, source: str, destination: str) -> Alias:
    domain = source.rpartition("@")[2]
    if await tx.domain_id(domain, lock=True) is None:
        raise NotFound(f"domain {domain} is not hosted here")
    return await tx.insert_alias(source, destination)


async def remove_alias(tx: Tx, source: str, destination: str | None) -> None:
    if not await tx.delete_alias(source, destination):
        raise NotFound(f"alias {source} does not exist")
