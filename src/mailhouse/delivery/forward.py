"""ARC sealing of mail Mailhouse forwards: an alias of a hosted domain that points outside
(RFC 8617 §5.1; RFC 7960 §3.2.3 explains why forwarders break SPF and lists break DKIM).

When mail that arrived from another server on port 25 is re-sent to a remote address (the alias
expansion of `accounts.resolve`), the forwarding domain adds one ARC set — AAR from our own
``Authentication-Results`` (``mailauth.inbound`` wrote it), AMS, AS — signed with its RSA DKIM key
(`mailauth.dkimkeys`; RFC 8617 §5.1: rsa-sha256 only), so the next receiver can see what we
verified before our hop broke SPF. Local recipients get the message unsealed (nothing left our
hands); submissions are DKIM-signed by the MSA instead, never sealed.

Built once per node in `services.build`; `delivery.accept.EnvelopeService` calls it just before
the remote recipients are queued. A domain without an RSA key, or a message dkimpy cannot seal,
is forwarded unsealed (logged): sealing never holds mail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mailhouse.accounts.resolve import Resolver
from mailhouse.mailauth import arc
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)


class ArcSealer:
    """Seals forwarded messages as the forwarding domain; AUTHSERV_ID is our hostname."""

    def __init__(self, resolver: Resolver, authserv_id: str, clock: Callable[[], float] = time.time) -> None:
        self.resolver = resolver
        self.authserv_id = authserv_id
        self.clock = clock

    async def seal(
        self, message: bytes | SpooledMessage, domain: str, queue_id: str
    ) -> bytes | SpooledMessage:
        """MESSAGE with an ARC set of DOMAIN on top, or MESSAGE unchanged when it cannot be sealed."""
        key = next((k for k in await self.resolver.dkim_keys(domain) if k.algorithm == "rsa-sha256"), None)
        if key is None:
            log.info("[%s] no RSA DKIM key for %s: forwarded without an ARC seal", queue_id, domain)
            return message
        # dkimpy hashes the whole message: read and sign off the event loop
        data = message if isinstance(message, bytes) else await asyncio.to_thread(message.to_bytes)
        fields = await asyncio.to_thread(arc.seal, data, key, self.authserv_id, now=self.clock())
        if not fields:
            log.info("[%s] ARC seal as %s not possible: forwarded without it", queue_id, domain)
            return message
        log.info("[%s] ARC-sealed as %s (s=%s)", queue_id, domain, key.selector)
        return message.prepend(fields) if isinstance(message, SpooledMessage) else fields + data
