"""Local delivery (MDA): a message accepted for hosted recipients lands in their INBOX, or in
the folder a verdict chose (`Folder`: DMARC quarantine today, spam scoring later).

RFC 5321 §4.4: `Return-Path:` is added by the final delivery. Recipients resolve through
aliases, plus-addressing and catch-all (`accounts.resolve`). Quota is checked at RCPT
(`452 4.2.2`) and again with the real size at delivery; a recipient found over quota
then gets a bounce (DSN) instead of the message.

Built once per node (`services.build`) from the store and the node's resolver; the accept
path (`delivery.accept`) and the queue runner (hosted recipients found in the queue) call it.

`Folder.JUNK` is the account's special-use ``\\Junk`` mailbox (RFC 6154 §2), found by its
attribute whatever its name, and created as ``Junk`` when the account has none.

Reports: a report mailed to a hosted domain's report address (`reports.intake`) is summarised
before it is filed, and filed into the Reports folder instead of INBOX (kept even when malformed).

Invariants: `deliver` returns only after the blob is fsynced and the index committed;
the delivery key `<queue id>:<account id>` makes a repeated delivery of the same
message (recovery after a crash) a no-op, so nobody ever gets two copies.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailhouse.accounts.resolve import Resolver
from mailhouse.delivery import sieve as sieve_mod
from mailhouse.delivery.sieve import Envelope, Plan, SieveFilter
from mailhouse.reports.intake import ReportIntake
from mailhouse.store.api import Account, AlreadyExists, MessageRecord, NewMessage, Store
from mailhouse.store.crlf import to_crlf
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

#: The name of the \Junk mailbox created when an account has none (store.api.SPECIAL_MAILBOXES).
JUNK_NAME = "Junk"


class Folder(enum.Enum):
    """Where a verdict files a message: the named mailbox (default INBOX) or the \\Junk one."""

    INBOX = "inbox"
    JUNK = "junk"  # RFC 6154 §2 \Junk: RFC 7489 §6.3 p=quarantine, spam verdicts


@dataclass(frozen=True, slots=True)
class QuotaState:
    over: bool
    reason: str = ""


@dataclass(slots=True)
class DeliveryResult:
    delivered: list[tuple[Account, MessageRecord]]
    over_quota: list[Account]
    rejected: list[tuple[Account, str]] = field(default_factory=list)  # Sieve reject (RFC 5429): why


class LocalDelivery:
    """Files messages into hosted mailboxes; CLOCK gives INTERNALDATE (seconds since the epoch)."""

    def __init__(
        self,
        store: Store,
        resolver: Resolver,
        clock: Callable[[], float] = time.time,
        reports: ReportIntake | None = None,
        sieve: SieveFilter | None = None,
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.clock = clock
        self.reports = reports
        self.sieve = sieve

    async def _report_folder(
        self, data: bytes | SpooledMessage, accounts: list[Account], queue_id: str
    ) -> str:
        """The Reports folder when DATA is a report for one of ACCOUNTS' report addresses, else ""."""
        intake = self.reports
        if intake is None:
            return ""
        acc = next((a for a in accounts if intake.is_report_address(a.address)), None)
        if acc is None:
            return ""
        result = await intake.take(data, acc.address.rpartition("@")[2], queue_id)
        return intake.folder if result.is_report else ""

    async def quota_state(self, account: Account, incoming: int = 0) -> QuotaState:
        if not account.quota_bytes and not account.quota_messages:
            return QuotaState(False)
        usage = await self.store.usage(account.id)
        if account.quota_messages and usage.messages + 1 > account.quota_messages:
            return QuotaState(True, "message count quota exceeded")
        if account.quota_bytes and usage.bytes + incoming > account.quota_bytes:
            return QuotaState(True, "storage quota exceeded")
        return QuotaState(False)

    async def deliver(
        self,
        data: bytes | SpooledMessage,
        sender: str,
        accounts: list[Account],
        queue_id: str,
        mailbox: str = "INBOX",
        folder: Folder = Folder.INBOX,
    ) -> DeliveryResult:
        """File DATA (already carrying Received:) into each account's MAILBOX (or its \\Junk
        mailbox when FOLDER says so), durably."""
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
        report_folder = await self._report_folder(data, accounts, queue_id) if mailbox == "INBOX" else ""
        # reports and explicit folders are not filtered; a quarantined (Junk) message is, with Junk
        # as its keep (so spamtest rules see spam: RFC 5235)
        filtered = mailbox == "INBOX" and not report_folder
        rejected: list[tuple[Account, str]] = []
        sieved: list[tuple[Account, Plan]] = []
        whole: bytes | None = None
        for acc in accounts:
            if (await self.quota_state(acc, size)).over:
                over.append(acc)
                continue
            scripts = await self.sieve.scripts(acc) if self.sieve is not None and filtered else None
            if self.sieve is not None and scripts:  # RFC 5228: the account's filter, once per recipient
                if whole is None:
                    whole = await _for_sieve(data)  # read only when a script runs
                plan = await self.sieve.plan(acc, scripts, whole, _envelope(sender, acc, whole))
                if plan.reject:
                    rejected.append((acc, plan.reject))
                    continue
                if (
                    plan.folders != {"INBOX": frozenset()}
                    or plan.head is not None
                    or plan.redirects
                    or plan.vacation
                    or plan.notifications
                ):
                    sieved.append((acc, plan))
                    continue
            mb_id = await self._junk_id(acc) if folder is Folder.JUNK else None
            if (
                not mb_id
                and report_folder
                and self.reports is not None
                and self.reports.is_report_address(acc.address)
            ):
                mb_id = await resolver.mailbox_id(acc.id, report_folder) or await self._create(
                    acc.id, report_folder
                )
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
        for acc, plan in sieved:
            delivered += await self._file_plan(data, return_path, acc, plan, queue_id, now, folder)
            assert self.sieve is not None and whole is not None
            await self.sieve.after_filing(acc, plan, whole, _envelope(sender, acc, whole), queue_id)
        for acc in over:
            log.info("[%s] %s is over quota; bouncing", queue_id, acc.address)
        for acc, why in rejected:
            log.info("[%s] %s: rejected by Sieve: %s", queue_id, acc.address, why)
        return DeliveryResult(delivered, over, rejected)

    async def _file_plan(
        self,
        data: bytes | SpooledMessage,
        return_path: bytes,
        acc: Account,
        plan: Plan,
        queue_id: str,
        now: float,
        folder: Folder,
    ) -> list[tuple[Account, MessageRecord]]:
        """File one recipient's copy where its Sieve plan says (editheader applied first)."""
        if not plan.folders:
            log.info("[%s] %s: discarded by Sieve", queue_id, acc.address)  # RFC 5228 §4.4
            return []
        blob: bytes | SpooledMessage
        if isinstance(data, SpooledMessage):
            blob = (data if plan.head is None else data.with_head(plan.head)).prepend(return_path)
            size = blob.size
        else:
            crlf = to_crlf(data)
            if plan.head is not None:  # RFC 5293: the edited header section, the body unchanged
                crlf = plan.head + crlf[sieve_mod.head_end(crlf) :]
            blob = return_path + crlf
            size = len(blob)
        merged: dict[int, set[str]] = {}
        for name, flags in plan.folders.items():
            if name == "INBOX" and folder is Folder.JUNK:  # the keep of a quarantined message
                mb_id = await self._junk_id(acc)
            else:
                mb_id = await self.resolver.mailbox_id(acc.id, name)
            if mb_id is None and name in plan.create:  # RFC 5490 §3.2 :create
                mb_id = await self._create(acc.id, name)
            if mb_id is None:  # RFC 5228 §4.1: a mailbox that does not exist: keep in INBOX
                log.info("[%s] %s: no mailbox %r; filed into INBOX", queue_id, acc.address, name)
                mb_id = await self.resolver.mailbox_id(acc.id, "INBOX") or await self._create(acc.id, "INBOX")
            if mb_id is not None:  # one copy per mailbox, with the union of the flags asked for
                merged.setdefault(mb_id, set()).update(flags)
        key = f"{queue_id}:{acc.id}"  # unique per mailbox: a re-run files nothing twice
        targets = [
            NewMessage(mb, "", size, flags=frozenset(fl), internaldate=now, delivery_key=key)
            for mb, fl in merged.items()
        ]
        recs = await self.store.deliver(blob, targets)
        for r in recs:
            log.info("[%s] delivered to %s uid=%d size=%d (sieve)", queue_id, acc.address, r.uid, r.size)
        return [(acc, r) for r in recs]

    async def _junk_id(self, acc: Account) -> int | None:
        """The id of ACC's \\Junk mailbox (RFC 6154 §2), created as `JUNK_NAME` if it has none."""
        for mb in await self.store.list_mailboxes(acc.id):
            if (mb.special_use or "").lower() == "\\junk":
                return mb.id
        existing = await self.store.get_mailbox(acc.id, JUNK_NAME)
        if existing is not None:  # a "Junk" without the attribute (made by a client): use it
            return existing.id
        try:
            return (await self.store.create_mailbox(acc.id, JUNK_NAME, "\\Junk")).id
        except AlreadyExists:  # made meanwhile by another delivery or the user
            again = await self.store.get_mailbox(acc.id, JUNK_NAME)
            return again.id if again is not None else None

    async def _create(self, account_id: int, name: str) -> int | None:
        try:
            return (await self.store.create_mailbox(account_id, name)).id
        except AlreadyExists:  # made meanwhile by another delivery (the resolver may cache its absence)
            mb = await self.store.get_mailbox(account_id, name)
            return mb.id if mb else None


async def _for_sieve(data: bytes | SpooledMessage) -> bytes:
    """The message as the Sieve runner reads it: whole up to MAX_BODY_FOR_SIEVE, else the header."""
    if isinstance(data, SpooledMessage):
        if data.size > sieve_mod.MAX_BODY_FOR_SIEVE:
            return data.head
        return data.to_bytes() if data.in_memory else await asyncio.to_thread(data.to_bytes)
    crlf = to_crlf(data)
    return crlf if len(crlf) <= sieve_mod.MAX_BODY_FOR_SIEVE else crlf[: sieve_mod.head_end(crlf)]


def _envelope(sender: str, acc: Account, message: bytes) -> Envelope:
    return Envelope(sender, acc.address, acc.address, spam_score=sieve_mod.spam_score(message))
