"""The envelope service: the one path by which a message enters the system, for every face.

SMTP (25/587/465) and the webmail both call `EnvelopeService` — the CLI mail client submits
over SMTP (port 587/465), so it reaches the same path. The faces ask it command by command
(`may_send_as` at MAIL FROM, `check_recipient` at RCPT; `delivery.policy`) and finally hand
the message to `accept`.

`accept` order (RFC 6409 §8 then RFC 5321 §4.4): for a submission the MSA
(`delivery.submission`) checks, repairs and DKIM-signs the message; local recipients get it
filed durably (`delivery.local`; a full mailbox gets a bounce); remote recipients are queued
durably (`queue.runner`). Only when this returns `250` may the caller acknowledge — a `250`
means the message is on stable storage.

The message is bytes (webmail) or a `store.spool.SpooledMessage` (SMTP): a big one stays on disk
all the way into its blobs (issue 12 item 2).

Built once per node in `services.build`; queue ids come from `queue.ids.new_queue_id`.
An authenticated sender's transactions and recipients are also counted against the
per-account limits (`delivery.sendlimits`: `start_send` at MAIL FROM, `recipient_room` /
`add_recipients` at RCPT) by every face. The recipients of an accepted submission are allowed as
senders for the submitter (`spam.userlists`, issue 14 §3: "senders the user wrote to are allowed").
"""

from __future__ import annotations

import logging

from mailhouse.delivery.forward import ArcSealer
from mailhouse.delivery.local import Folder, LocalDelivery
from mailhouse.delivery.policy import EnvelopePolicy, RcptVerdict
from mailhouse.delivery.sendlimits import SendLimits
from mailhouse.delivery.srs import SrsCodec
from mailhouse.delivery.submission import Submission
from mailhouse.proto.smtp import Reply
from mailhouse.proto.smtp_address import Address
from mailhouse.queue.runner import QueueRunner
from mailhouse.spam.userlists import UserLists
from mailhouse.store.api import Account, StoreError
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

RemoteRcpt = tuple[str, dict[str, str | None]]


class EnvelopeService:
    def __init__(
        self,
        policy: EnvelopePolicy,
        msa: Submission,
        local: LocalDelivery,
        outbound: QueueRunner,
        limits: SendLimits | None = None,
        lists: UserLists | None = None,
        sealer: ArcSealer | None = None,
        srs: SrsCodec | None = None,
    ) -> None:
        self.policy = policy
        self.msa = msa
        self.local = local
        self.outbound = outbound
        self.limits = limits
        self.lists = lists
        self.sealer = sealer
        self.srs = srs

    async def start_send(self, account: Account, ip: str) -> Reply | None:
        """A message transaction by ACCOUNT from IP: None, or the send-rate refusal (counted if not)."""
        return None if self.limits is None else await self.limits.start_send(account, ip)

    async def recipient_room(self, account: Account, ip: str, count: int = 1) -> bool:
        """Whether COUNT more recipients fit in ACCOUNT's daily budget."""
        return True if self.limits is None else await self.limits.has_recipient_room(account, ip, count)

    async def add_recipients(self, account: Account, ip: str, count: int = 1) -> None:
        """Count COUNT accepted recipients against ACCOUNT's daily budget."""
        if self.limits is not None:
            await self.limits.add_recipients(account, ip, count)

    async def may_send_as(self, account: Account, address: str) -> bool:
        """May ACCOUNT use ADDRESS as envelope sender? (RFC 6409 §6.1)"""
        return await self.policy.may_send_as(account, address)

    async def check_recipient(
        self, addr: Address, authenticated: Account | None, declared_size: int
    ) -> RcptVerdict:
        """The verdict on one recipient (hosted, alias, quota, relay rules)."""
        return await self.policy.check_recipient(addr, authenticated, declared_size)

    async def accept(
        self,
        message: bytes | SpooledMessage,
        sender: str,
        local: list[Account],
        remote: list[RemoteRcpt],
        *,
        queue_id: str,
        submitted_by: Account | None = None,
        mail_params: dict[str, str | None] | None = None,
        folder: Folder = Folder.INBOX,
        forwarded_by: str = "",
    ) -> Reply:
        """File and queue MESSAGE durably; the reply for end of data (RFC 5321 §4.2, §4.4).
        FOLDER is where local recipients get it (a verdict's: `Folder.JUNK` for quarantine);
        FORWARDED_BY, the hosted domain whose alias sends it on to REMOTE (then ARC-sealed)."""
        if submitted_by is not None:
            prepared = await self.msa.prepare(message, submitted_by, sender)
            if isinstance(prepared, Reply):
                return prepared
            message = prepared
        if local:
            result = await self.local.deliver(message, sender, local, queue_id, folder=folder)
            if result.rejected and len(result.rejected) == len(local) and not remote:
                # RFC 5429 §2.1: every recipient's filter refused it: say so before the 250
                return Reply(550, "5.7.1", result.rejected[0][1][:200].replace("\r", " ").replace("\n", " "))
            if result.rejected:  # RFC 5429 §2.1: after acceptance, a bounce (a DSN) instead
                for acc, why in result.rejected:
                    await self.outbound.bounce_local(message, sender, [acc.address], f"550 5.7.1 {why}")
            if result.over_quota and not result.delivered and not remote:
                return Reply(452, "4.2.2", "Error: mailbox full")  # RFC 3463 X.2.2
            if result.over_quota:
                await self.outbound.bounce_local(
                    message, sender, [a.address for a in result.over_quota], "552 5.2.2 Mailbox full"
                )
        remote_sender = sender
        if remote and submitted_by is None and forwarded_by:
            if self.sealer is not None:
                message = await self.sealer.seal(message, forwarded_by, queue_id)  # RFC 8617 §5.1
            if self.srs is not None:  # SPF is checked against our domain at the next hop (srs.py)
                remote_sender = self.srs.forward(sender)
        if remote:
            await self.outbound.enqueue(queue_id, remote_sender, remote, message, mail_params or {})
        if submitted_by is not None and self.lists is not None:
            try:  # after the message is safe: a failure here costs an allow entry, not the mail
                await self.lists.remember_recipients(
                    submitted_by.id, [a.address for a in local] + [r for r, _ in remote]
                )
            except StoreError as e:
                log.warning("%s: recipients not remembered as allowed senders: %s", queue_id, e)
        return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")
