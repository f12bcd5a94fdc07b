"""What the import tests compare: a mailbox's messages as (uid, flags, date, octets)."""

from __future__ import annotations

from mailhouse.store.store import MailStore
from tests.transfer.conftest import ALICE


async def folders(store: MailStore, user: str = ALICE) -> dict[str, tuple[int, str | None]]:
    acc = await store.get_account(user)
    assert acc is not None
    out: dict[str, tuple[int, str | None]] = {}
    for mb in await store.list_mailboxes(acc.id):
        out[mb.name] = (len(await store.list_messages(mb.id)), mb.special_use)
    return out


async def contents(
    store: MailStore, name: str, user: str = ALICE
) -> list[tuple[int, frozenset[str], float, bytes]]:
    acc = await store.get_account(user)
    assert acc is not None
    mb = await store.get_mailbox(acc.id, name)
    assert mb is not None, name
    return [
        (r.uid, r.flags, r.internaldate, await store.blobs.get(r.blob_key))
        for r in await store.list_messages(mb.id)
    ]
