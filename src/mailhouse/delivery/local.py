"""Local delivery (MDA): a message accepted for hosted recipients lands in their INBOX.

RFC 5321 §4.4: `Return-Path:` is added by the final delivery. Recipients resolve through
aliases, plus-addressing and catch-all (`accounts.resolve`). Quota is checked at RCPT
(`452 4.2.2`) and again with the real size at delivery; a recipient found over quota
then gets a bounce (DSN) instead of the message.

Built once per node (`services.build`) from the store and the node's resolver; the accept
path (`delivery.accept`) and the queue runner (hosted recipients found in the queue) call it.

Invariants: `deliver` returns only after the blob is fsynced and the index committed;
the delivery key `<queue id>:<account id>` makes a repeated delivery of the same
message (recovery after a crash) a no-op, so nobody ever gets two copies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailhouse.accounts.resolve import Resolver
from mailhouse.store.api import Account, MessageRecord, NewMessage, Store, StoreError
from mailhouse.store.crlf import to_crlf
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

#: The name of the \Junk mailbox created when an account has none (store.api.SPECIAL_MAILBOXES).
JUNK_NAME = "Junk"


@dataclass(frozen=True, slots=True)
class QuotaState:
    over: bool
    reason: str = ""


@dataclass(slots=True)
class DeliveryResult:
    delivered: list[tuple[Account, MessageRecord]]
    over_quota: list[Account]


class LocalDelivery:
    """Files messages into hosted mailboxes; CLOCK gives INTERNALDATE (seconds since the epoch)."""

    def __init__(self, store: Store, resolver: Resolver, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.resolver = resolver
        self.clock = clock

    async def quota_state(self, account: Account, incoming: int = 0) -> QuotaState:
        if not account.quota_bytes and not account.quota_messages:
            return QuotaState(False)
        usage = await self.store.usage(account.id)
        if account.quota_messages and usage.messages + 1 > account.quota_messages:
            return QuotaState(True, "message count quota exceeded")
        if account.quota_bytes and usage.bytes + incoming > account.quota_bytes:
            return QuotaState(True, "storage quota exceeded")
        return QuotaState(False)

    async def junk_mailbox(self, account: Account) -> int:
        """The id of ACCOUNT's special-use \\Junk mailbox (RFC 6154 §2), whatever its name; a
        mailbox "Junk" with that use is created when the account has none."""
        for mb in await self.store.list_mailboxes(account.id):
            if mb.special_use and "\\junk" in mb.special_use.lower().split():
                return mb.id
        existing = await self.resolver.mailbox_id(account.id, JUNK_NAME)
        if existing is not None:  # a "Junk" without the attribute (made by a client): use it
            return existing
        try:
            return (await self.store.create_mailbox(account.id, JUNK_NAME, "\\Junk")).id
        except StoreError:  # made meanwhile by another delivery
            made = await self.store.get_mailbox(account.id, JUNK_NAME)
            if made is None:
                raise
            return made.id

    async def deliver(
        self,
        data: bytes | SpooledMessage,
        sender: str,
        accounts: list[Account],
        queue_id: str,
        mailbox: str = "INBOX",
        junk: bool = False,
    ) -> DeliveryResult:
        """File DATA (already carrying Received:) into each account's MAILBOX, durably; JUNK (the spam
        verdict, issue 14 §3) files it into each account's \\Junk mailbox instead."""
        return_path = b"Return-Path: <" + sender.encode("utf-8") + b">\r\n"  # RFC 5321 §4.4
        blob: bytes | SpooledMessage
        if isinstance(data, SpooledMessage):
            blob = data.prepend(return_path)  # the body stays where it is (store.spool)
            size = blob.size
        else:
            blob = return_path + to_crlf(data)
            size = len(blob)
        targets: list[tuple[Account, NewMessage]] = []
        over: list[Account] = []
        now = self.clock()
        resolver = self.resolver
        for acc in accounts:
            if (await self.quota_state(acc, size)).over:
                over.append(acc)
                continue
            mb_id = await self.junk_mailbox(acc) if junk else None
            mb_id = (
                mb_id
                or await resolver.mailbox_id(acc.id, mailbox)
                or await resolver.mailbox_id(acc.id, "INBOX")
            )
            if mb_id is None:
                mb_id = (await self.store.create_mailbox(acc.id, "INBOX")).id
            targets.append(
                (acc, NewMessage(mb_id, "", size, internaldate=now, delivery_key=f"{queue_id}:{acc.id}"))
            )
        delivered: list[tuple[Account, MessageRecord]] = []
        if targets:
            recs = await self.store.deliver(blob, [t[1] for t in targets])
            delivered = [(t[0], r) for t, r in zip(targets, recs, strict=True)]
            for acc, r in delivered:
                log.info("[%s] delivered to %s uid=%d size=%d", queue_id, acc.address, r.uid, r.size)
        for acc in over:
            log.info("[%s] %s is over quota; bouncing", queue_id, acc.address)
        return DeliveryResult(delivered, over)
