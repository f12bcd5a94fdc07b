"""accounts/admin.py role addresses (RFC 5321 §4.5.1 postmaster, RFC 2142 abuse) on a real store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailhouse.accounts.admin import Admin
from mailhouse.accounts.resolve import Resolver
from mailhouse.store import open_store


def _run(tmp_path: Path, body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
        await store.open()
        try:
            await body(Admin(store), store)
        finally:
            await store.close()

    asyncio.run(main())


def test_new_domain_aliases_postmaster_and_abuse_to_the_first_admin(tmp_path: Path) -> None:
    async def body(admin: Admin, store) -> None:  # type: ignore[no-untyped-def]
        await admin.add_domain("example.org")
        assert await store.list_aliases("example.org") == []  # no admin yet: nobody to send it to
        await admin.add_user("boss@example.org", "long password 1", is_admin=True)
        await admin.add_user("second@example.org", "long password 2", is_admin=True)
        got = {(a.source, a.destination) for a in await store.list_aliases("example.org")}
        assert got == {
            ("postmaster@example.org", "boss@example.org"),
            ("abuse@example.org", "boss@example.org"),
        }
        await admin.add_domain("example.net")  # made while an admin exists
        got = {(a.source, a.destination) for a in await store.list_aliases("example.net")}
        assert got == {
            ("postmaster@example.net", "boss@example.org"),
            ("abuse@example.net", "boss@example.org"),
        }
        res = await Resolver(store).resolve("postmaster@example.net")
        assert [a.address for a in res.local] == ["boss@example.org"]

    _run(tmp_path, body)


def test_an_account_under_a_role_address_replaces_its_alias(tmp_path: Path) -> None:
    async def body(admin: Admin, store) -> None:  # type: ignore[no-untyped-def]
        await admin.add_domain("example.org")
        await admin.add_user("boss@example.org", "long password 1", is_admin=True)
        await admin.add_user("postmaster@example.org", "long password 2")
        assert [a.source for a in await store.list_aliases("example.org")] == ["abuse@example.org"]
        res = await Resolver(store).resolve("postmaster@example.org")
        assert [a.address for a in res.local] == ["postmaster@example.org"]
        # a changed alias is left alone
        await store.remove_alias("abuse@example.org")
        await admin.add_alias("abuse@example.org", "postmaster@example.org")
        await admin.ensure_role_aliases()
        assert [(a.source, a.destination) for a in await store.list_aliases("example.org")] == [
            ("abuse@example.org", "postmaster@example.org")
        ]

    _run(tmp_path, body)
