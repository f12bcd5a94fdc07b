"""The envelope service every face uses (delivery.accept.EnvelopeService), on a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse import config, services
from mailhouse.delivery.policy import MAILBOX_FULL, NOT_OWNER, RELAY_DENIED, UNKNOWN_USER
from mailhouse.proto.smtp_address import parse_path
from mailhouse.queue.ids import new_queue_id
from mailhouse.web import send

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[services.Services]:
    cfg = config.from_dict(
        {"hostname": "mail.example.org", "data_dir": str(tmp_path), "dns": {"nameservers": ["127.0.0.1:9"]}}
    )
    s = await services.build(cfg)
    await s.store.add_domain("example.org")
    await s.store.add_account("alice@example.org", "x")
    await s.store.add_account("bob@example.org", "x")
    await s.store.add_account("full@example.org", "x", quota_messages=1)
    yield s
    await s.outbound.pool.close()
    await s.store.close()


def addr(text: str):  # type: ignore[no-untyped-def]
    a = parse_path(text.encode(), smtputf8=True)
    assert a is not None
    return a


async def test_recipient_rules(svc: services.Services) -> None:
    env = svc.envelope
    alice = await svc.store.get_account("alice@example.org")
    assert (await env.check_recipient(addr("bob@example.org"), None, 10)).reply.code == 250
    assert (await env.check_recipient(addr("nobody@example.org"), None, 10)).reply == UNKNOWN_USER
    assert (await env.check_recipient(addr("x@elsewhere.test"), None, 10)).reply == RELAY_DENIED
    remote = await env.check_recipient(addr("x@elsewhere.test"), alice, 10)
    assert remote.reply.code == 250 and remote.remote == ["x@elsewhere.test"]
    full = await svc.store.get_account("full@example.org")
    assert full is not None
    await env.accept(MESSAGE, "", [full], [], queue_id=new_queue_id())  # fills its one-message quota
    assert (await env.check_recipient(addr("full@example.org"), None, 10)).reply == MAILBOX_FULL


async def test_submission_is_checked_and_filed(svc: services.Services) -> None:
    env = svc.envelope
    alice = await svc.store.get_account("alice@example.org")
    bob = await svc.store.get_account("bob@example.org")
    assert alice is not None and bob is not None
    assert await env.may_send_as(alice, "Alice@Example.org")
    assert not await env.may_send_as(alice, "bob@example.org")
    forged = MESSAGE.replace(b"From: alice@", b"From: bob@")
    refused = await env.accept(forged, "alice@example.org", [bob], [], queue_id="Q1", submitted_by=alice)
    assert refused.code == 553
    ok = await env.accept(MESSAGE, "alice@example.org", [bob], [], queue_id="Q2", submitted_by=alice)
    assert ok.code == 250 and ok.text == "Ok: queued as Q2"
    mb = await svc.store.get_mailbox(bob.id, "INBOX")
    assert mb is not None
    (rec,) = await svc.store.list_messages(mb.id)
    blob = await svc.store.blobs.get(rec.blob_key)
    assert blob.startswith(b"Return-Path: <alice@example.org>\r\n") and b"Message-ID: <" in blob


async def test_webmail_submits_through_the_same_service(svc: services.Services) -> None:
    alice = await svc.store.get_account("alice@example.org")
    assert alice is not None
    with pytest.raises(send.SendError) as ei:
        await send.submit(svc, alice, "bob@example.org", ["bob@example.org"], MESSAGE, "127.0.0.1")
    assert str(ei.value) == send._text(NOT_OWNER)
    sent = await send.submit(svc, alice, "alice@example.org", ["bob@example.org"], MESSAGE, "127.0.0.1")
    assert sent.local == 1 and sent.remote == 0 and len(sent.queue_id) == 12
