"""The one path by which an accepted message leaves a session: SMTP (25/587/465) and the
webmail both end here.

Order (RFC 6409 §8 then RFC 5321 §4.4): for a submission the MSA checks, repairs and
DKIM-signs the message; local recipients get it filed durably (a full mailbox gets a
bounce); remote recipients are queued durably. Only when this returns `250` may the
caller acknowledge — a `250` means the message is on stable storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.proto.smtp import Reply
from mailhouse.store.api import Account

if TYPE_CHECKING:
    from mailhouse.services import Services

RemoteRcpt = tuple[str, dict[str, str | None]]


async def accept_message(
    svc: Services,
    message: bytes,
    sender: str,
    local: list[Account],
    remote: list[RemoteRcpt],
    *,
    queue_id: str,
    submitted_by: Account | None = None,
    mail_params: dict[str, str | None] | None = None,
) -> Reply:
    if submitted_by is not None:
        from mailhouse.delivery.submission import prepare_submission

        prepared = await prepare_submission(svc, message, submitted_by, sender)
        if isinstance(prepared, Reply):
            return prepared
        message = prepared
    if remote and svc.outbound is None:
        return Reply(451, "4.3.2", "Error: outbound delivery is not available")
    if local:
        result = await svc.delivery.deliver(message, sender, local, queue_id)
        if result.over_quota and not result.delivered and not remote:
            return Reply(452, "4.2.2", "Error: mailbox full")  # RFC 3463 X.2.2
        if result.over_quota and svc.outbound is not None:
            await svc.outbound.bounce_local(
                message, sender, [a.address for a in result.over_quota], "552 5.2.2 Mailbox full"
            )
    if remote:
        await svc.outbound.enqueue(queue_id, sender, remote, message, mail_params or {})
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")
