"""Store contract for webmail sessions and per-user settings (store/websessions.py). Runs on both
backends (the `store` fixture of test_contract)."""

from __future__ import annotations

import asyncio

from mailhouse.store.api import NewMessage, Store, WebSession
from tests.store.test_contract import _account, store  # noqa: F401  (the fixture)


def _s(id_hash: str, acc: int, created: float = 1000.0, expires: float = 2000.0) -> WebSession:
    return WebSession(id_hash, acc, "csrf-" + id_hash, created, created, expires, "Firefox, 127.0.0.1")


async def test_sessions_found_until_expiry_and_ended(store: Store) -> None:  # noqa: F811
    a = await _account(store)
    b = await _account(store, "bob@example.org")
    await store.create_web_session(_s("h1", a))
    await store.create_web_session(_s("h2", a, created=1100.0))
    await store.create_web_session(_s("h3", b))
    assert await store.get_web_session("h1", 1500.0) == _s("h1", a)
    assert await store.get_web_session("h1", 2000.0) is None  # expired
    assert await store.get_web_session("nope", 1500.0) is None
    await store.touch_web_session("h1", 1600.0)
    got = await store.get_web_session("h1", 1650.0)
    assert got is not None and got.last_seen == 1600.0
    assert [s.id_hash for s in await store.list_web_sessions(a, 1500.0)] == ["h1", "h2"]
    assert await store.end_web_session("h2")
    assert not await store.end_web_session("h2")
    assert await store.get_web_session("h2", 1500.0) is None
    # "log out everywhere else": all but the one kept, other accounts untouched
    await store.create_web_session(_s("h4", a, created=1200.0))
    assert await store.end_web_sessions(a, keep="h1") == 1
    assert [s.id_hash for s in await store.list_web_sessions(a, 1500.0)] == ["h1"]
    assert await store.get_web_session("h3", 1500.0) is not None


async def test_creating_a_session_drops_expired_ones(store: Store) -> None:  # noqa: F811
    a = await _account(store)
    await store.create_web_session(_s("old", a, created=100.0, expires=500.0))
    await store.create_web_session(_s("new", a, created=1000.0))
    assert [s.id_hash for s in await store.list_web_sessions(a, 0.0)] == ["new"]


async def test_password_change_and_removal_end_sessions(store: Store) -> None:  # noqa: F811
    a = await _account(store)
    b = await _account(store, "bob@example.org")
    await store.create_web_session(_s("h1", a))
    await store.create_web_session(_s("h2", b))
    await store.set_user_setting(b, "name", "Bob")
    await store.set_password("alice@example.org", "newhash", None)
    assert await store.get_web_session("h1", 1500.0) is None
    assert await store.get_web_session("h2", 1500.0) is not None
    await store.remove_account("bob@example.org")
    assert await store.get_web_session("h2", 1500.0) is None
    assert await store.user_settings(b) == {}


async def test_user_settings(store: Store) -> None:  # noqa: F811
    a = await _account(store)
    b = await _account(store, "bob@example.org")
    assert await store.user_settings(a) == {}
    await store.set_user_setting(a, "name", "Alice")
    await store.set_user_setting(a, "signature", "-- \nA")
    await store.set_user_setting(a, "name", "Alice Liddell")
    await store.set_user_setting(b, "name", "Bob")
    assert await store.user_settings(a) == {"name": "Alice Liddell", "signature": "-- \nA"}
    await store.set_user_setting(a, "signature", None)
    assert await store.user_settings(a) == {"name": "Alice Liddell"}


async def test_a_new_subscriber_is_not_told_of_changes_from_before(store: Store) -> None:  # noqa: F811
    # issue 19: the webmail's "New mail" toast fired after login for mail that arrived while no
    # page was open — SQLite's poller, restarting, replayed the changes committed while idle
    acc = await _account(store)
    inbox = await store.get_mailbox(acc, "INBOX")
    assert inbox
    async with store.subscribe(acc) as feed:
        await store.deliver(b"one\r\n", [NewMessage(inbox.id, "", 0)])
        await asyncio.wait_for(feed.__anext__(), 3.0)
    await asyncio.sleep(0.3)  # nobody listens: the poller stops (it polls every 50 ms)
    await store.deliver(b"two\r\n", [NewMessage(inbox.id, "", 0)])  # while nobody listens
    await asyncio.sleep(0.3)  # longer ago than the poller's restart margin
    async with store.subscribe(acc) as feed:
        (rec,) = await store.deliver(b"three\r\n", [NewMessage(inbox.id, "", 0)])
        change = await asyncio.wait_for(feed.__anext__(), 3.0)
        assert change.modseq == rec.modseq  # not "two"'s
