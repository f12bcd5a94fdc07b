"""The store operations `mailhouse import` adds (issue 18 §1): adopting the source's UIDVALIDITY
in a mailbox that never gave a UID, and appending with the source's UID where it is >= UIDNEXT.
Runs on both backends (the `store` fixture of test_contract)."""

from __future__ import annotations

from mailhouse.store.api import ChangeKind, NewMessage, Store
from mailhouse.store.store import MailStore
from tests.store.test_contract import _account, store  # noqa: F401  (the fixture)


async def test_adopt_uidvalidity_only_before_any_uid(store: Store) -> None:  # noqa: F811
    assert isinstance(store, MailStore)
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox is not None
    async with store.subscribe(acc) as sub:
        assert await store.adopt_uidvalidity(inbox.id, 1234567)
        change = await sub.__anext__()
    assert change.kind is ChangeKind.MAILBOX
    mb = await store.get_mailbox_by_id(inbox.id)
    assert mb is not None and mb.uidvalidity == 1234567 and mb.uidnext == 1
    assert await store.adopt_uidvalidity(inbox.id, 1234567)  # the same value: nothing to do
    await store.deliver(b"m\r\n", [NewMessage(inbox.id, "", 0)])
    assert not await store.adopt_uidvalidity(inbox.id, 7654321)  # a UID was given under 1234567
    mb = await store.get_mailbox_by_id(inbox.id)
    assert mb is not None and mb.uidvalidity == 1234567


async def test_adopt_uidvalidity_refused_after_expunge(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox is not None and isinstance(store, MailStore)
    [rec] = await store.deliver(b"m\r\n", [NewMessage(inbox.id, "", 0)])
    await store.expunge(inbox.id, [rec.uid])
    assert not await store.adopt_uidvalidity(inbox.id, 99)  # empty, but UID 1 was named once


async def test_append_with_source_uid(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox is not None and isinstance(store, MailStore)
    recs = await store.append_octets(
        [
            (b"a\r\n", NewMessage(inbox.id, "", 0, uid=5, delivery_key="import:a")),
            (b"b\r\n", NewMessage(inbox.id, "", 0, uid=9, delivery_key="import:b")),
            (b"c\r\n", NewMessage(inbox.id, "", 0, uid=3)),  # below UIDNEXT: the next UID
            (b"d\r\n", NewMessage(inbox.id, "", 0)),
        ]
    )
    assert [r.uid for r in recs] == [5, 9, 10, 11]
    mb = await store.get_mailbox_by_id(inbox.id)
    assert mb is not None and mb.uidnext == 12
    again = await store.append_octets(
        [(b"a\r\n", NewMessage(inbox.id, "", 0, uid=20, delivery_key="import:a"))]
    )
    assert [r.uid for r in again] == [5]  # the delivery key already used: no new UID, no UIDNEXT move
    mb = await store.get_mailbox_by_id(inbox.id)
    assert mb is not None and mb.uidnext == 12
    assert await store.delivery_keys(inbox.id) == {5: "import:a", 9: "import:b"}
