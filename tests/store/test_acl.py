"""Mailbox access-control lists (store/acl.py, RFC 4314): the rules on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.store import open_store
from mailhouse.store.acl import AclError, apply_mod, check_identifier, normalise, with_obsolete
from mailhouse.store.api import Account, AclEntry, Store


@pytest.fixture
async def store(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if store_backend == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
    else:
        s = open_store(request.getfixturevalue("postgres_db_url"), tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _acc(store: Store, addr: str) -> Account:
    domain = addr.split("@")[1]
    if not await store.get_domain(domain):
        await store.add_domain(domain)
    return await store.add_account(addr, "hash")


def test_rights_normalised_and_obsolete_mapped() -> None:
    assert normalise("arl") == "lra"
    assert normalise("lrc") == "lrkx"  # RFC 4314 §2.1.1: c → k x
    assert normalise("d") == "te"  # d → t e
    assert with_obsolete("lrkxte") == "lrkxtecd"
    assert with_obsolete("lr") == "lr"
    with pytest.raises(AclError):
        normalise("lrz")
    assert apply_mod("lr", "+si") == "lrsi"
    assert apply_mod("lrsi", "-rz"[:2]) == "lsi"
    assert apply_mod("lrsi", "wa") == "wa"


def test_identifiers() -> None:
    assert check_identifier("Bob@Example.org") == "bob@example.org"
    assert check_identifier("anyone") == "anyone"
    assert check_identifier("anyone@example.org") == "anyone@example.org"
    for bad in ("", "-bob@example.org", "bob", "a b@example.org", "x/y@example.org"):
        with pytest.raises(AclError):
            check_identifier(bad)


async def test_set_get_delete(store: Store) -> None:
    alice = await _acc(store, "alice@example.org")
    box = await store.create_mailbox(alice.id, "Team")
    assert await store.get_acl(box.id) == []
    assert await store.set_acl(box.id, "bob@example.org", "lr") == "lr"
    assert await store.set_acl(box.id, "bob@example.org", "+si") == "lrsi"
    assert await store.set_acl(box.id, "anyone", "l") == "l"
    assert await store.get_acl(box.id) == [AclEntry("anyone", "l"), AclEntry("bob@example.org", "lrsi")]
    assert await store.set_acl(box.id, "bob@example.org", "-lrsi") == ""  # no rights left: no entry
    assert await store.get_acl(box.id) == [AclEntry("anyone", "l")]
    assert await store.delete_acl(box.id, "anyone")
    assert not await store.delete_acl(box.id, "anyone")
    with pytest.raises(AclError):
        await store.set_acl(box.id, "bob@example.org", "lrq")


async def test_effective_rights_and_shared_with(store: Store) -> None:
    alice = await _acc(store, "alice@example.org")
    bob = await _acc(store, "bob@example.org")
    carol = await _acc(store, "carol@other.test")
    team = await store.create_mailbox(alice.id, "Team")
    hidden = await store.create_mailbox(alice.id, "Hidden")
    assert await store.my_rights(alice, team) == "lrswipkxtea"  # the owner: every right
    assert await store.my_rights(bob, team) == ""
    await store.set_acl(team.id, "bob@example.org", "r")
    await store.set_acl(team.id, "anyone@example.org", "ls")
    await store.set_acl(hidden.id, "bob@example.org", "r")  # no l: not listed
    assert await store.my_rights(bob, team) == "lrs"
    assert await store.my_rights(carol, team) == ""  # another domain
    shared = await store.shared_with(bob)
    assert [(s.mailbox.name, s.owner, s.rights) for s in shared] == [("Team", "alice@example.org", "lrs")]
    assert await store.shared_with(carol) == []
    await store.set_acl(team.id, "anyone", "l")
    assert [s.mailbox.name for s in await store.shared_with(carol)] == ["Team"]
    assert await store.shared_with(alice) == []  # one's own mailboxes are not "shared with" one


async def test_entries_go_with_mailbox_and_account(store: Store) -> None:
    alice = await _acc(store, "alice@example.org")
    bob = await _acc(store, "bob@example.org")
    team = await store.create_mailbox(alice.id, "Team")
    await store.set_acl(team.id, "bob@example.org", "lr")
    await store.delete_mailbox(team.id)
    again = await store.create_mailbox(alice.id, "Team")
    assert await store.get_acl(again.id) == []
    await store.set_acl(again.id, "bob@example.org", "lr")
    await store.remove_account("bob@example.org")
    assert await store.get_acl(again.id) == []
    bob = await _acc(store, "bob@example.org")  # a new bob inherits nothing
    assert await store.shared_with(bob) == []


async def test_seen_per_reader(store: Store) -> None:
    alice = await _acc(store, "alice@example.org")
    bob = await _acc(store, "bob@example.org")
    carol = await _acc(store, "carol@example.org")
    team = await store.create_mailbox(alice.id, "Team")
    assert await store.seen_by(bob.id, team.id) == frozenset()
    await store.set_seen_by(bob.id, team.id, [3, 1, 3], True)
    await store.set_seen_by(carol.id, team.id, [2], True)
    assert await store.seen_by(bob.id, team.id) == {1, 3}
    assert await store.seen_by(carol.id, team.id) == {2}
    await store.set_seen_by(bob.id, team.id, [3, 9], False)
    assert await store.seen_by(bob.id, team.id) == {1}
    await store.set_seen_by(bob.id, team.id, [], True)  # nothing to do
    await store.remove_account("carol@example.org")
    carol = await _acc(store, "carol@example.org")
    assert await store.seen_by(carol.id, team.id) == frozenset()  # ids may be reused: nothing left
    await store.delete_mailbox(team.id)
    assert await store.seen_by(bob.id, team.id) == frozenset()
