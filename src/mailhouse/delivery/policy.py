"""Envelope policy for every face: who may receive, who may send as whom.

One set of rules for SMTP (25/587/465), the webmail and anything else that submits mail;
the faces ask `EnvelopePolicy` (through `delivery.accept.EnvelopeService`) command by
command and answer in their own syntax.

RFC 5321 §3.6 / RFC 5321 §7.1: never an open relay. Unauthenticated (the `smtp` listener)
only hosted domains receive mail, and every address form that could route elsewhere
(percent hack, quoted `@`, source route, bang path, trailing dot, address literal) is
refused with `554 5.7.1`, as Postfix does with `allow_untrusted_routing = no`. An
authenticated user may send anywhere but only as an address they own (RFC 6409 §6.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhouse.accounts.resolve import Resolver
from mailhouse.delivery.local import LocalDelivery
from mailhouse.delivery.srs import SrsCodec, SrsError
from mailhouse.proto.smtp import Reply
from mailhouse.proto.smtp_address import Address, relay_tricks
from mailhouse.store.api import Account, Store

RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
UNKNOWN_USER = Reply(550, "5.1.1", "Recipient address rejected: User unknown in virtual mailbox table")
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full")
NOT_OWNER = Reply(553, "5.7.1", "Sender address rejected: not owned by user")
RCPT_OK = Reply(250, "2.1.5", "Ok")


@dataclass(slots=True)
class RcptVerdict:
    reply: Reply
    local: list[Account] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)


class EnvelopePolicy:
    """Recipient and sender rules over the node's resolver; quota through local delivery."""

    def __init__(
        self, store: Store, resolver: Resolver, local: LocalDelivery, srs: SrsCodec | None = None
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.local = local
        self.srs = srs

    async def check_recipient(
        self, addr: Address, authenticated: Account | None, declared_size: int
    ) -> RcptVerdict:
        resolver = self.resolver
        if addr.domain == "" and addr.local_part.lower() == "postmaster":
            # RFC 5321 §4.1.1.3: <postmaster> without a domain must be accepted
            accounts = []
            for d in await self.store.list_domains():
                res = await resolver.resolve(f"postmaster@{d.name}")
                accounts += res.local
                if accounts:
                    break
            if accounts:
                return RcptVerdict(RCPT_OK, accounts[:1])
            return RcptVerdict(UNKNOWN_USER)
        if self.srs is not None and self.srs.is_ours(addr.mailbox):
            return await self._srs_recipient(addr)
        trick = relay_tricks(addr)
        local_domain = (not addr.is_literal) and await resolver.is_local_domain(addr.domain)
        if trick is not None and authenticated is None:
            return RcptVerdict(RELAY_DENIED)  # RFC 5321 §3.6.1 / §7.1: no routing tricks
        if not local_domain:
            if authenticated is None:
                return RcptVerdict(RELAY_DENIED)
            return RcptVerdict(RCPT_OK, remote=[addr.mailbox])
        res = await resolver.resolve(f"{addr.local_part}@{addr.domain}")
        if res.empty:
            return RcptVerdict(UNKNOWN_USER)
        for acc in res.local:
            if (await self.local.quota_state(acc, declared_size)).over:
                return RcptVerdict(MAILBOX_FULL)  # RFC 3463 §3.3: X.2.2 mailbox full
        return RcptVerdict(RCPT_OK, list(res.local), list(res.remote))

    async def _srs_recipient(self, addr: Address) -> RcptVerdict:
        """A bounce to one of our SRS addresses goes to the sender it encodes (delivery/srs.py)."""
        assert self.srs is not None
        try:
            original = self.srs.reverse(addr.mailbox)
        except SrsError as e:
            return RcptVerdict(Reply(550, "5.1.1", f"Recipient address rejected: {e.kind.value}"))
        _, _, domain = original.rpartition("@")
        if await self.resolver.is_local_domain(domain):
            res = await self.resolver.resolve(original)
            return (
                RcptVerdict(RCPT_OK, list(res.local), list(res.remote))
                if not res.empty
                else RcptVerdict(UNKNOWN_USER)
            )
        return RcptVerdict(RCPT_OK, remote=[original])

    async def may_send_as(self, account: Account, address: str) -> bool:
        owned = await self.resolver.owned_addresses(account)
        return address.lower() in owned  # RFC 6409 §6.1: enforce submission rights
