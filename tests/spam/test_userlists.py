"""Per-user sender lists (spam/userlists.py): matching rules on a real store, and the submission
path remembering whom the user wrote to (a real submission over port 587)."""

from __future__ import annotations

import smtplib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailhouse.accounts.admin import Admin
from mailhouse.spam.userlists import UserLists, Verdict, candidates, normalize
from mailhouse.store import open_store
from mailhouse.store.api import ListKind, Store
from tests.imapserver.server_helpers import start_server, tls_ctx
from tests.mailhouse_proc import PASSWORD, MailhouseProcess


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
    await s.open()
    await s.add_domain("example.org")
    try:
        yield s
    finally:
        await s.close()


def test_entries_and_candidates() -> None:
    assert normalize(" <Friend@Example.NET> ") == "friend@example.net"
    assert normalize("Example.NET.") == "example.net"
    assert normalize("localhost") is None and normalize("a b@c.d") is None and normalize("@x.y") is None
    assert candidates("Joe@Mail.Spam.Example") == [
        "joe@mail.spam.example",
        "mail.spam.example",
        "spam.example",
    ]
    assert candidates("") == [] and candidates("<>") == []


async def test_most_specific_entry_wins(store: Store) -> None:
    acc = (await store.add_account("alice@example.org", "h")).id
    lists = UserLists(store)
    assert await lists.check(acc, "joe@news.shop.example") is None
    await lists.block(acc, "shop.example")
    assert await lists.check(acc, "joe@news.shop.example") is Verdict.BLOCK
    await lists.allow(acc, "joe@news.shop.example")
    assert await lists.check(acc, "joe@news.shop.example") is Verdict.ALLOW
    assert await lists.check(acc, "ann@shop.example") is Verdict.BLOCK
    assert await lists.check(acc, "") is None  # the null reverse-path never matches
    with pytest.raises(ValueError):
        await lists.allow(acc, "not an address")


async def test_written_to_is_allowed_but_never_over_a_block(store: Store) -> None:
    acc = (await store.add_account("alice@example.org", "h")).id
    lists = UserLists(store)
    await lists.block(acc, "ex@foe.example")
    n = await lists.remember_recipients(acc, ["Friend@Pal.Example", "ex@foe.example", "friend@pal.example"])
    assert n == 1
    assert await lists.entries(acc) == [
        ("ex@foe.example", Verdict.BLOCK),
        ("friend@pal.example", Verdict.ALLOW),
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("lists"), users=("writer", "reader"))
    try:
        yield mh
    finally:
        mh.stop()


def test_submission_allows_the_recipients(server: MailhouseProcess) -> None:
    msg = (
        b"From: writer@example.org\r\nTo: reader@example.org, pal@remote.example\r\n"
        b"Subject: hi\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP(*server.addr("submission"), timeout=20) as c:
        c.starttls(context=tls_ctx())
        c.login("writer@example.org", PASSWORD)
        c.sendmail("writer@example.org", ["reader@example.org", "Pal@Remote.Example"], msg)

    async def lists(a: Admin) -> list[tuple[str, ListKind]]:
        acc = await a.store.get_account("writer@example.org")
        assert acc is not None
        return await a.store.sender_lists(acc.id)

    assert server.admin(lists) == [
        ("pal@remote.example", ListKind.ALLOW),
        ("reader@example.org", ListKind.ALLOW),
    ]
