"""Submission.prepare (RFC 6409 §§5–8): checks, repairs and DKIM signing, on a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mailhouse.accounts.resolve import Resolver
from mailhouse.delivery.submission import Submission, add_missing_fields
from mailhouse.mailauth import dkim, dkimkeys
from mailhouse.message.headers import get_header, get_headers, split_header_block
from mailhouse.proto.smtp import Reply
from mailhouse.store import open_store

RECEIVED = b"Received: from client ([127.0.0.1])\r\n\tby mail.example.org (Mailhouse) with ESMTPSA id X;\r\n\tThu, 1 Jan 2026 00:00:00 +0000\r\n"


def msg(*headers: str, body: str = "Hello.\r\n") -> bytes:
    return RECEIVED + "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + body.encode()


class FakeClock:
    """Monotonic seconds for the resolver's caches: moves only when told (or by STEP per read)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.step = 0.0

    def __call__(self) -> float:
        t = self.now
        self.now += self.step
        return t

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Any]:
    store = open_store(f"sqlite:///{tmp_path}/mailhouse.db", tmp_path)
    await store.open()
    for d in ("example.org", "example.net"):
        await store.add_domain(d)
    for key in dkimkeys.generate("example.org", "mh"):
        await store.set_dkim_key(key)
    alice = await store.add_account("alice@example.org", "x")
    await store.add_account("bob@example.org", "x")
    await store.add_alias("sales@example.org", "alice@example.org")
    clock = FakeClock()
    resolver = Resolver(store, clock=clock)
    msa = Submission(resolver, "mail.example.org", dkim.DkimSigner())
    ns = SimpleNamespace(store=store, resolver=resolver, clock=clock, msa=msa, alice=alice)
    yield ns
    await store.close()


async def submit(svc: Any, message: bytes) -> bytes | Reply:
    return await svc.msa.prepare(message, svc.alice, "alice@example.org")


async def refused(svc: Any, message: bytes) -> Reply:
    r = await submit(svc, message)
    assert isinstance(r, Reply), r
    return r


async def test_missing_from_is_refused(svc: Any) -> None:
    r = await refused(svc, msg("To: bob@example.org", "Subject: hi"))
    assert (r.code, r.enhanced) == (554, "5.6.0")
    assert "From" in str(r.text)


@pytest.mark.parametrize(
    "value",
    ["root", "Alice <alice@>", "alice@example.org bob", "a@b@c", "undisclosed-recipients:;", ""],
)
async def test_invalid_from_is_refused(svc: Any, value: str) -> None:
    r = await refused(svc, msg(f"From: {value}", "To: bob@example.org"))
    assert (r.code, r.enhanced) == (554, "5.6.0"), r
    assert "From" in str(r.text)


async def test_two_from_fields_refused(svc: Any) -> None:
    r = await refused(svc, msg("From: alice@example.org", "From: alice@example.org"))
    assert (r.code, r.enhanced) == (554, "5.6.0")
    assert "more than one From" in str(r.text)


async def test_several_from_mailboxes_need_sender(svc: Any) -> None:
    r = await refused(svc, msg("From: alice@example.org, sales@example.org"))
    assert (r.code, r.enhanced) == (554, "5.6.0") and "Sender" in str(r.text)
    ok = await submit(svc, msg("From: alice@example.org, sales@example.org", "Sender: alice@example.org"))
    assert isinstance(ok, bytes)


async def test_from_of_someone_else_is_553(svc: Any) -> None:
    r = await refused(svc, msg("From: Bob <bob@example.org>", "To: x@example.net"))
    assert (r.code, r.enhanced) == (553, "5.7.1")
    assert "bob@example.org" in str(r.text)


async def test_sender_of_someone_else_is_553(svc: Any) -> None:
    r = await refused(svc, msg("From: alice@example.org", "Sender: bob@example.org"))
    assert (r.code, r.enhanced) == (553, "5.7.1")


async def test_owned_alias_and_case_are_accepted(svc: Any) -> None:
    out = await submit(svc, msg('From: "Sales" <Sales@EXAMPLE.org>', "To: x@example.net"))
    assert isinstance(out, bytes)


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("this line has no colon", "no ':'"),
        ("Bad Name: x", "not printable US-ASCII"),
        ("X-Long: " + "a" * 1000, "longer than 998"),
    ],
)
async def test_broken_header_line_is_refused(svc: Any, line: str, what: str) -> None:
    r = await refused(svc, msg("From: alice@example.org", line, "Subject: s"))
    assert (r.code, r.enhanced) == (554, "5.6.0")
    assert what in str(r.text)


async def test_bare_cr_in_header_is_refused(svc: Any) -> None:
    m = RECEIVED + b"From: alice@example.org\r\nSubject: a\rb\r\n\r\nbody\r\n"
    r = await refused(svc, m)
    assert (r.code, r.enhanced) == (554, "5.6.0") and "bare CR" in str(r.text)


async def test_bcc_removed_message_id_and_date_added(svc: Any) -> None:
    m = msg(
        "From: alice@example.org",
        "To: bob@example.org",
        "Bcc: secret@example.net,\r\n\tother@example.net",
        "Subject: hi",
    )
    out = await submit(svc, m)
    assert isinstance(out, bytes)
    assert get_header(out, "Bcc") is None and b"secret@" not in out and b"other@" not in out
    mid = get_header(out, "Message-ID")
    assert mid is not None and mid.startswith(b"<") and mid.endswith(b"@mail.example.org>")
    assert get_header(out, "Date") is not None
    names = [n.lower() for n, _ in split_header_block(out)[0]]
    # DKIM-Signature on top (RFC 6376 §5.6), then our Received, then the added fields
    assert names[:2] == [b"dkim-signature", b"dkim-signature"]
    assert names[2] == b"received"
    assert names.index(b"date") > names.index(b"received")
    assert out.endswith(b"\r\n\r\nHello.\r\n")


async def test_existing_message_id_and_date_kept(svc: Any) -> None:
    m = msg("From: alice@example.org", "Date: Mon, 1 Jan 2024 00:00:00 +0000", "Message-ID: <x@y>")
    out = await submit(svc, m)
    assert isinstance(out, bytes)
    assert get_headers(out, "Message-ID") == [b"<x@y>"]
    assert get_headers(out, "Date") == [b"Mon, 1 Jan 2024 00:00:00 +0000"]


async def test_two_messages_get_distinct_message_ids(svc: Any) -> None:
    a = add_missing_fields(msg("From: a@b"), "h")
    b = add_missing_fields(msg("From: a@b"), "h")
    assert get_header(a, "Message-ID") != get_header(b, "Message-ID")


async def test_signed_with_both_algorithms(svc: Any) -> None:
    out = await submit(svc, msg("From: alice@example.org", "To: bob@example.org", "Subject: hi"))
    assert isinstance(out, bytes)
    sigs = get_headers(out, "DKIM-Signature")
    assert len(sigs) == 2
    assert b"a=ed25519-sha256" in sigs[0] and b"s=mhe" in sigs[0]
    assert b"a=rsa-sha256" in sigs[1] and b"s=mhr" in sigs[1]
    for s in sigs:
        assert b"d=example.org" in s
        h = s.replace(b" ", b"").replace(b"\t", b"").split(b"h=")[1].split(b";")[0]
        assert h.split(b":").count(b"from") == 2  # oversigned
        assert b"received" not in h and b"bcc" not in h
    # and they verify with the published records (served by a lookup function here;
    # tests/mailauth/test_dkim.py verifies through a real DNS server)
    records = {
        f"{k.selector}._domainkey.example.org.".encode(): k.public_record.encode()
        for k in await svc.store.get_dkim_keys("example.org")
    }
    results = dkim.verify(out, dnsfunc=lambda name, timeout=5: records.get(name))
    assert [r.result for r in results] == ["pass", "pass"]


async def test_domain_without_keys_left_unsigned(svc: Any) -> None:
    carol = await svc.store.add_account("carol@example.net", "x")  # example.net has no keys
    out = await svc.msa.prepare(msg("From: carol@example.net"), carol, "carol@example.net")
    assert isinstance(out, bytes) and get_header(out, "DKIM-Signature") is None


async def test_unauthenticated_refused(svc: Any) -> None:
    r = await svc.msa.prepare(msg("From: alice@example.org"), None, "alice@example.org")
    assert isinstance(r, Reply) and r.code == 530


async def test_utf8_from_accepted_and_8bit_garbage_refused(svc: Any) -> None:
    ok = await submit(svc, msg("From: Älice <alice@example.org>"))
    assert isinstance(ok, bytes)
    r = await refused(svc, RECEIVED + b"From: \xff\xfe <alice@example.org>\r\n\r\nx\r\n")
    assert (r.code, r.enhanced) == (554, "5.6.0") and "UTF-8" in str(r.text)


@pytest.mark.parametrize(
    "value",
    [
        b" alice@example.org",
        b"alice@example.org",
        b" <alice@example.org>",
        b" Alice <alice@example.org>",
        b' "Alice Liddell" <Alice@Example.ORG> ',
        b" Alice Liddell<alice@example.org>",
        b' "" <a@b>',
        b" a.b.c+tag@sub.example.org",
        b" x!#$%&'*+/=?^_`{|}~-y@example.org",
        b" \tA\tB <a@b>\t",
        b' "O\'Brien, Pat" <pat@example.org>',
        b" -x@-y",
        b" Pat_O-Neil <pat@example.org>",
    ],
)
def test_simple_originator_fast_path_agrees_with_the_full_parser(value: bytes) -> None:
    from mailhouse.delivery import submission

    assert submission._SIMPLE_MAILBOX.fullmatch(value), "meant to take the fast path"
    assert submission._mailboxes("From", value) == submission._mailboxes_parsed("From", value)


@pytest.mark.parametrize(
    "value",
    [
        b" =?utf-8?q?Al=C3=AFce?= <alice@example.org>",
        b" John Q. Public <john@example.org>",
        b" alice@example.org (Alice)",
        b" <alice@example.org",
        b" alice@",
        b" a..b@example.org",
        b" .a@example.org",
        b' "a\\"b" <a@b>',
        b" Alice <alice@example.org>, bob@example.org",
        b" alice@[127.0.0.1]",
        b' "x"@example.org',
        b" Al\xc3\xafce <alice@example.org>",
        b" < alice@example.org >",
        b" Alice\r\n <alice@example.org>",
        b' "=?utf-8?q?x?=" <a@b>',
    ],
)
async def test_other_originators_take_the_full_parser(svc: Any, value: bytes) -> None:
    """Anything beyond the simple shapes gets exactly the full parser's answer or refusal."""
    from mailhouse.delivery import submission

    def outcome(fn: Any) -> Any:
        try:
            return fn("From", value)
        except submission.SubmissionRefused as e:
            return e.reply.text

    expected = outcome(submission._mailboxes_parsed)
    assert outcome(submission._mailboxes) == expected


async def test_owned_addresses_cached_until_the_directory_changes(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailhouse.accounts import resolve

    svc.clock.step = resolve.GEN_CHECK_INTERVAL  # look at the generation every time
    calls = 0
    real = svc.store.list_aliases

    async def counting(*a: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*a)

    monkeypatch.setattr(svc.store, "list_aliases", counting)
    r = await refused(svc, msg("From: info@example.org"))
    assert r.code == 553
    assert isinstance(await submit(svc, msg("From: sales@example.org")), bytes)
    assert calls == 1  # the second submission used the cached set
    await svc.store.add_alias("info@example.org", "alice@example.org")  # bumps the generation
    assert isinstance(await submit(svc, msg("From: info@example.org")), bytes)
    assert calls == 2
    await svc.store.remove_alias("info@example.org")
    assert (await refused(svc, msg("From: info@example.org"))).code == 553


async def test_dkim_keys_cached_for_a_while(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailhouse.accounts import resolve

    calls = 0
    real = svc.store.get_dkim_keys

    async def counting(domain: str) -> Any:
        nonlocal calls
        calls += 1
        return await real(domain)

    monkeypatch.setattr(svc.store, "get_dkim_keys", counting)
    first = await svc.resolver.dkim_keys("example.org")
    assert await svc.resolver.dkim_keys("example.org") == first and calls == 1
    # a key change does not bump the directory generation: the TTL bounds the staleness
    new = dkimkeys.generate("example.org", "v2")
    for key in new:
        await svc.store.set_dkim_key(key)
    svc.clock.advance(resolve.DKIM_KEYS_TTL + 1)
    keys = await svc.resolver.dkim_keys("example.org")
    assert calls == 2 and {k.selector for k in keys} >= {"v2r", "v2e"}
