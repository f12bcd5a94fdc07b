"""Authentication of mail arriving from other servers: SPF (RFC 7208) and DKIM (RFC 6376),
recorded in an `Authentication-Results:` header (RFC 8601) at the top of the message.

Forged Authentication-Results claiming our host name are removed first (RFC 8601 §5).
Results are recorded, not enforced: rejecting on SPF/DKIM/DMARC is a later policy step.
The DNS work runs in threads so the event loop never waits on a lookup, within one DNS budget
per message (`dnsbudget.py`, ``[mailauth] dns_budget``): a check out of time is ``temperror``.
The message arrives spooled (`store.spool.SpooledMessage`): forged fields are removed from the
header section and our field prepended to it; the body is only read, in pieces, to hash it.
"""

from __future__ import annotations

import logging

from mailhouse.config import Config
from mailhouse.mailauth import authres, dnsbudget
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)


async def annotate(
    message: SpooledMessage, cfg: Config, ip: str, mail_from: str, helo: str
) -> SpooledMessage:
    """Return MESSAGE with forged results removed and our Authentication-Results prepended."""
    message = message.with_head(authres.strip_forged(message.head, cfg.hostname))
    ns = cfg.dns_nameservers or None
    # issue 12 item 9: SPF and DKIM in parallel within one DNS budget (temperror past it)
    spf_result, dkim_results = await dnsbudget.check(message, ip, mail_from, helo, ns, cfg.dns_budget)
    if spf_result is None and dkim_results is None:  # checker bugs (logged): record nothing
        return message
    return message.prepend(authres.field(cfg.hostname, spf_result, dkim_results))
