"""imapserver.quota / metadata / urlauth against a real SQLite store in tmp_path."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mailhouse.imapserver import metadata, quota, urlauth
from mailhouse.imapserver.errors import Bad, No
from mailhouse.proto.imap.commands import (
    GenUrlAuth,
    GetMetadata,
    GetQuota,
    MailboxArg,
    ResetKey,
    SetMetadata,
    SetQuota,
)
from mailhouse.store.api import NewMessage
from mailhouse.store.sqlite.backend import SqliteStore

LOCKS = metadata.MetadataLocks()  # the node's metadata locks, as ImapNode holds them

CORPUS = Path(__file__).parent.parent / "message" / "corpus"
HOST = "mail.example.org"


class Env:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def setup(self) -> None:
        s = self.store
        await s.open()
        await s.add_domain("example.org")
        self.alice = await s.add_account(
            "alice@example.org", "x", quota_bytes=10 * 1024 * 1024, quota_messages=100
        )
        self.bob = await s.add_account("bob@example.org", "x")
        self.admin = await s.add_account("admin@example.org", "x", is_admin=True)
        self.inbox = await s.get_mailbox(self.alice.id, "INBOX")
        assert self.inbox is not None
        self.raw = (CORPUS / "alternative_attach.eml").read_bytes()
        recs = await s.deliver(self.raw, [NewMessage(self.inbox.id, "", 0)])
        self.uid = recs[0].uid
        self.inbox = await s.get_mailbox(self.alice.id, "INBOX")


def run(store_env: Env, fn: Callable[[Env], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        await store_env.setup()
        try:
            return await fn(store_env)
        finally:
            await store_env.store.close()

    return asyncio.run(go())


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(SqliteStore(tmp_path / "index.db", tmp_path / "blobs"))


# ---------------------------------------------------------------- QUOTA (RFC 9208)


def test_getquota_and_root(env: Env) -> None:
    async def t(e: Env) -> None:
        r = await quota.getquota(e.store, e.alice, GetQuota(""))
        used_kib = (len(e.raw) + 1023) // 1024
        assert r.data == f'* QUOTA "" (STORAGE {used_kib} 10240 MESSAGE 1 100)\r\n'.encode()
        r = await quota.getquotaroot(e.store, e.alice, MailboxArg("inbox"))
        assert r.data.startswith(b'* QUOTAROOT inbox ""\r\n* QUOTA "" (STORAGE ')
        with pytest.raises(No) as ex:
            await quota.getquotaroot(e.store, e.alice, MailboxArg("Nope"))
        assert ex.value.code == "NONEXISTENT"
        with pytest.raises(No):
            await quota.getquota(e.store, e.alice, GetQuota("bob@example.org"))  # not admin
        # unlimited account: no resources listed
        r = await quota.getquota(e.store, e.bob, GetQuota(""))
        assert r.data == b'* QUOTA "" ()\r\n'

    run(env, t)


def test_setquota_admin_only(env: Env) -> None:
    async def t(e: Env) -> None:
        with pytest.raises(No) as ex:
            await quota.setquota(e.store, e.alice, SetQuota("", (("STORAGE", 1),)))
        assert ex.value.code == "NOPERM"
        r = await quota.setquota(e.store, e.admin, SetQuota("alice@example.org", (("STORAGE", 2048),)))
        # RFC 9208 §4.1.3: resources not listed are removed (MESSAGE now unlimited)
        assert r.data == b"* QUOTA alice@example.org (STORAGE 1 2048)\r\n"
        acc = await e.store.get_account("alice@example.org")
        assert acc is not None and acc.quota_bytes == 2048 * 1024 and acc.quota_messages == 0
        with pytest.raises(No):
            await quota.setquota(e.store, e.admin, SetQuota("", (("FOOBAR", 1),)))
        with pytest.raises(No):
            await quota.setquota(e.store, e.admin, SetQuota("nobody@example.org", (("STORAGE", 1),)))

    run(env, t)


# ---------------------------------------------------------------- METADATA (RFC 5464)


def test_metadata_roundtrip_and_depth(env: Env) -> None:
    async def t(e: Env) -> None:
        s, a = e.store, e.alice
        await metadata.setmetadata(
            s,
            a,
            SetMetadata(
                "INBOX",
                (
                    ("/private/comment", b"my inbox"),
                    ("/Private/Vendor/Acme/a", b"1"),  # case-insensitive entry names
                    ("/private/vendor/acme/a/b", b"\xff\x00binary"),
                    ("/shared/comment", b"shared"),
                ),
            ),
            locks=LOCKS,
        )
        r = await metadata.getmetadata(s, a, GetMetadata("INBOX", ("/private/comment", "/shared/comment")))
        assert r.data == b'* METADATA INBOX (/private/comment "my inbox" /shared/comment "shared")\r\n'
        r = await metadata.getmetadata(s, a, GetMetadata("INBOX", ("/private/vendor/acme",), depth="1"))
        assert r.data == b'* METADATA INBOX (/private/vendor/acme NIL /private/vendor/acme/a "1")\r\n'
        r = await metadata.getmetadata(
            s, a, GetMetadata("INBOX", ("/private/vendor/acme",), depth="infinity")
        )
        assert b"/private/vendor/acme/a/b {8}\r\n\xff\x00binary" in r.data
        # MAXSIZE omits long values and reports the longest (RFC 5464 §4.2.1)
        r = await metadata.getmetadata(s, a, GetMetadata("INBOX", ("/private/comment",), maxsize=3))
        assert r.data == b"" and r.code == "METADATA LONGENTRIES 8"
        # NIL removes
        await metadata.setmetadata(s, a, SetMetadata("INBOX", (("/private/comment", None),)), locks=LOCKS)
        r = await metadata.getmetadata(s, a, GetMetadata("INBOX", ("/private/comment",)))
        assert r.data == b"* METADATA INBOX (/private/comment NIL)\r\n"
        # per mailbox and per account
        r = await metadata.getmetadata(s, a, GetMetadata("Sent", ("/shared/comment",)))
        assert b"NIL" in r.data
        r = await metadata.getmetadata(s, e.bob, GetMetadata("INBOX", ("/shared/comment",)))
        assert r.data == b"* METADATA INBOX (/shared/comment NIL)\r\n"

    run(env, t)


def test_metadata_follows_rename(env: Env) -> None:
    async def t(e: Env) -> None:
        s, a = e.store, e.alice
        box = await s.create_mailbox(a.id, "Projects")
        await metadata.setmetadata(s, a, SetMetadata("Projects", (("/private/comment", b"p"),)), locks=LOCKS)
        await s.rename_mailbox(box.id, "Work")
        r = await metadata.getmetadata(s, a, GetMetadata("Work", ("/private/comment",)))
        assert r.data == b'* METADATA Work (/private/comment "p")\r\n'
        await s.delete_mailbox(box.id)
        await s.create_mailbox(a.id, "Work")
        r = await metadata.getmetadata(s, a, GetMetadata("Work", ("/private/comment",)))
        assert b"NIL" in r.data  # a re-created mailbox starts empty

    run(env, t)


def test_metadata_server_entries_and_permissions(env: Env) -> None:
    async def t(e: Env) -> None:
        s, a = e.store, e.alice
        r = await metadata.getmetadata(s, a, GetMetadata("", ("/shared/admin",)))
        assert r.data == b'* METADATA "" (/shared/admin "mailto:postmaster@example.org")\r\n'
        r = await metadata.getmetadata(s, a, GetMetadata("Sent", ("/private/specialuse",)))
        assert r.data == b'* METADATA Sent (/private/specialuse "\\\\Sent")\r\n'
        with pytest.raises(No) as ex:
            await metadata.setmetadata(s, a, SetMetadata("", (("/shared/admin", b"x"),)), locks=LOCKS)
        assert ex.value.code == "NOPERM"
        with pytest.raises(No):
            await metadata.setmetadata(
                s, a, SetMetadata("", (("/shared/comment", b"x"),)), locks=LOCKS
            )  # admins only
        await metadata.setmetadata(
            s, e.admin, SetMetadata("", (("/shared/comment", b"Welcome"),)), locks=LOCKS
        )
        await metadata.setmetadata(s, a, SetMetadata("", (("/private/comment", b"mine"),)), locks=LOCKS)
        with pytest.raises(No):
            await metadata.getmetadata(s, a, GetMetadata("Nope", ("/private/comment",)))
        for bad in (
            "/other/x",
            "/private",
            "/private//x",
            "/private/x/",
            "/private/*",
            "private/x",
            "/private/a\x01",
        ):
            with pytest.raises(Bad):
                await metadata.setmetadata(s, a, SetMetadata("", ((bad, b"x"),)), locks=LOCKS)

    run(env, t)


def test_metadata_limits(env: Env) -> None:
    async def t(e: Env) -> None:
        s, a = e.store, e.alice
        with pytest.raises(No) as ex:
            big = b"x" * (metadata.MAX_VALUE_SIZE + 1)
            await metadata.setmetadata(s, a, SetMetadata("INBOX", (("/private/big", big),)), locks=LOCKS)
        assert ex.value.code == f"METADATA MAXSIZE {metadata.MAX_VALUE_SIZE}"
        many = tuple((f"/private/e{i}", b"v") for i in range(metadata.MAX_ENTRIES))
        await metadata.setmetadata(s, a, SetMetadata("INBOX", many), locks=LOCKS)
        with pytest.raises(No) as ex:
            await metadata.setmetadata(
                s, a, SetMetadata("INBOX", (("/private/one-more", b"v"),)), locks=LOCKS
            )
        assert ex.value.code == "METADATA TOOMANY"
        # replacing an existing entry is fine at the limit
        await metadata.setmetadata(s, a, SetMetadata("INBOX", (("/private/e0", b"w"),)), locks=LOCKS)

    run(env, t)


def test_reserved_entries_invisible(env: Env) -> None:
    async def t(e: Env) -> None:
        s, a = e.store, e.alice
        rump = f"imap://alice@example.org@{HOST}/INBOX;UIDVALIDITY={e.inbox.uidvalidity}/;UID={e.uid};URLAUTH=anonymous"
        rump = rump.replace("@example.org@", "%40example.org@")
        await urlauth.genurlauth(s, a, GenUrlAuth(((rump.encode(), "INTERNAL"),)), locks=LOCKS)
        r = await metadata.getmetadata(s, a, GetMetadata("INBOX", ("/private",), depth="infinity"))
        assert b"urlauth-key" not in r.data and b"mailhouse" not in r.data
        r = await metadata.getmetadata(s, a, GetMetadata("INBOX", (urlauth.KEY_ENTRY,)))
        assert r.data.endswith(b" NIL)\r\n")
        with pytest.raises(No):
            await metadata.setmetadata(
                s, a, SetMetadata("INBOX", ((urlauth.KEY_ENTRY, b"forged"),)), locks=LOCKS
            )

    run(env, t)


# ---------------------------------------------------------------- URLAUTH (RFC 4467, 5524)


def _rump(e: Env, access: str = "anonymous", section: str = "", extra: str = "") -> str:
    sec = f"/;SECTION={section}" if section else ""
    return (
        f"imap://alice%40example.org@{HOST}/INBOX;UIDVALIDITY={e.inbox.uidvalidity}/;UID={e.uid}{sec}"
        f"{extra};URLAUTH={access}"
    )


async def _gen(e: Env, rump: str) -> bytes:
    r = await urlauth.genurlauth(
        e.store, e.alice, GenUrlAuth(((rump.encode(), "INTERNAL"),)), hostnames={HOST}, locks=LOCKS
    )
    m = re.fullmatch(rb'\* GENURLAUTH "([^"]+)"\r\n', r.data)
    assert m, r.data
    return m.group(1)


def test_genurlauth_and_urlfetch(env: Env) -> None:
    async def t(e: Env) -> None:
        url = await _gen(e, _rump(e, section="1.1"))
        assert re.search(rb";URLAUTH=anonymous:internal:[0-9a-f]{64}$", url)
        r = await urlauth.urlfetch(e.store, None, [url], hostnames={HOST})
        from mailhouse.message.parse import parse_message
        from mailhouse.message.sections import fetch_section

        want = fetch_section(e.raw, parse_message(e.raw), "1.1")
        from mailhouse.proto.imap.response import string

        assert r.data == b'* URLFETCH "' + url + b'" ' + string(want) + b"\r\n"
        # whole message
        url2 = await _gen(e, _rump(e))
        r = await urlauth.urlfetch(e.store, e.bob, [url2])
        assert r.data.endswith(e.raw + b"\r\n")
        # tampering: another UID, another section, a flipped token digit
        bad = [
            url.replace(b"SECTION=1.1", b"SECTION=1.2"),
            url.replace(b"UID=%d" % e.uid, b"UID=%d" % (e.uid + 1)),
            url[:-1] + (b"0" if url[-1:] != b"0" else b"1"),
            url.replace(b"UIDVALIDITY=", b"UIDVALIDITY=1"),
        ]
        r = await urlauth.urlfetch(e.store, e.bob, bad)
        assert r.data.count(b" NIL\r\n") == 4

    run(env, t)


def test_urlauth_access_rules(env: Env) -> None:
    async def t(e: Env) -> None:
        s = e.store
        u_bob = await _gen(e, _rump(e, access="user+bob%40example.org"))
        u_auth = await _gen(e, _rump(e, access="authuser"))
        u_sub = await _gen(e, _rump(e, access="submit+alice%40example.org"))
        assert (await urlauth.urlfetch(s, e.bob, [u_bob])).data.count(b"NIL") == 0
        assert b" NIL\r\n" in (await urlauth.urlfetch(s, e.alice, [u_bob])).data  # user+bob only
        assert b" NIL\r\n" in (await urlauth.urlfetch(s, None, [u_auth])).data  # needs a login
        assert b" NIL\r\n" not in (await urlauth.urlfetch(s, e.bob, [u_auth])).data
        # submit+: never via URLFETCH, only for the submission server (BURL)
        assert b" NIL\r\n" in (await urlauth.urlfetch(s, e.alice, [u_sub])).data
        assert await urlauth.resolve_url(s, e.alice, u_sub, as_submit=True) == e.raw

    run(env, t)


def test_urlauth_expire_and_resetkey(env: Env) -> None:
    async def t(e: Env) -> None:
        s = e.store
        past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = await _gen(e, _rump(e, extra=f";EXPIRE={past}"))
        new = await _gen(e, _rump(e, extra=f";EXPIRE={future}"))
        r = await urlauth.urlfetch(s, e.bob, [old, new])
        assert r.data.startswith(b'* URLFETCH "' + old + b'" NIL\r\n* URLFETCH "' + new + b'" {')
        await urlauth.resetkey(s, e.alice, ResetKey("INBOX"), locks=LOCKS)
        assert (await urlauth.urlfetch(s, e.bob, [new])).data.endswith(b" NIL\r\n")
        again = await _gen(e, _rump(e))
        await urlauth.resetkey(s, e.alice, ResetKey(None), locks=LOCKS)  # all mailboxes
        assert (await urlauth.urlfetch(s, e.bob, [again])).data.endswith(b" NIL\r\n")
        with pytest.raises(No):
            await urlauth.resetkey(s, e.alice, ResetKey("Nope"), locks=LOCKS)
        with pytest.raises(Bad):
            await urlauth.resetkey(s, e.alice, ResetKey("INBOX", ("XYZ",)), locks=LOCKS)

    run(env, t)


def test_genurlauth_refusals(env: Env) -> None:
    async def t(e: Env) -> None:
        s, a = e.store, e.alice
        good = _rump(e)
        cases = [
            (good.replace("alice%40", "bob%40"), "INTERNAL"),  # someone else's mailbox
            (good, "SHA1"),  # unknown mechanism
            (good.replace(";URLAUTH=anonymous", ""), "INTERNAL"),  # no URLAUTH
            (good.replace(f"UIDVALIDITY={e.inbox.uidvalidity}", "UIDVALIDITY=1"), "INTERNAL"),
            (good.replace(HOST, "evil.example"), "INTERNAL"),
            (good + ":internal:" + "0" * 64, "INTERNAL"),  # already has a token
            ("http://example.org/", "INTERNAL"),
        ]
        for rump, mech in cases:
            with pytest.raises(No):
                await urlauth.genurlauth(
                    s, a, GenUrlAuth(((rump.encode(), mech),)), hostnames={HOST}, locks=LOCKS
                )

    run(env, t)


def test_urlauth_binary_and_bodypartstructure(env: Env) -> None:
    async def t(e: Env) -> None:
        url = await _gen(e, _rump(e, section="2"))  # the attachment (base64)
        req = urlauth.FetchRequest(url, binary=True, bodypartstructure=True, extended=True)
        r = await urlauth.urlfetch(e.store, e.bob, [req])
        assert r.data.startswith(b'* URLFETCH "' + url + b'" (BODYPARTSTRUCTURE (')
        assert b"(BINARY " in r.data and b"base64" in r.data.lower()
        plain = urlauth.FetchRequest(url, extended=True)
        r = await urlauth.urlfetch(e.store, e.bob, [plain])
        assert b" (BODY " in r.data

    run(env, t)


def test_resolve_url_for_catenate(env: Env) -> None:
    async def t(e: Env) -> None:
        s = e.store
        rel = f"/INBOX;UIDVALIDITY={e.inbox.uidvalidity}/;UID={e.uid}/;SECTION=HEADER".encode()
        data = await urlauth.resolve_url(s, e.alice, rel)
        assert data.startswith(b"From: Alice") and data.endswith(b"\r\n\r\n")
        with pytest.raises(No) as ex:
            await urlauth.resolve_url(s, e.bob, rel)  # bob has no such message
        assert ex.value.code is not None and ex.value.code.startswith("BADURL ")
        with pytest.raises(No):
            await urlauth.resolve_url(s, e.alice, b"/INBOX/;UID=99999")
        with pytest.raises(No):  # an absolute URL naming another user without URLAUTH
            await urlauth.resolve_url(
                s, e.bob, f"imap://alice%40example.org@{HOST}/INBOX/;UID={e.uid}".encode()
            )

    run(env, t)
