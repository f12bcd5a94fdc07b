"""Reverse DNS, forward-confirmed reverse DNS (FCrDNS) and HELO consistency of the client.

- ``RDNS_NONE``: the client address has no PTR record (RFC 1912 §2.1: every reachable host
  should have one; Postfix ``reject_unknown_reverse_client_hostname``);
- ``FCRDNS_FAIL``: no PTR name resolves back to the address (Postfix
  ``reject_unknown_client_hostname``);
- ``HELO_NOT_FQDN``: the HELO name is neither a dotted domain nor an address literal
  (RFC 5321 §4.1.1.1: "a fully-qualified domain name ... or an address literal");
- ``HELO_IP_MISMATCH``: the HELO is an address literal that is not the client's address;
- ``HELO_OURS``: the client greets with our own host name (a forgery: we never connect to
  ourselves on port 25).

A look-up that could not be told (timeout, SERVFAIL) scores nothing: a DNS outage is no sign of
spam.
"""

from __future__ import annotations

import asyncio
import ipaddress

from mailhouse.spam.lookup import Lookup
from mailhouse.spam.rules import Context, Hit, clean_reason

__all__ = ["SCORES", "ClientDns", "verified_name"]

#: RDNS_NONE as SpamAssassin's (0.79); the others small: alone they never make a message Junk.
SCORES = {
    "RDNS_NONE": 0.8,
    "FCRDNS_FAIL": 0.8,
    "HELO_NOT_FQDN": 0.5,
    "HELO_IP_MISMATCH": 1.0,
    "HELO_OURS": 3.0,
}
#: PTR names checked forward: a host with many PTRs gets the first few.
MAX_PTR_NAMES = 3


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return False


async def verified_name(lookup: Lookup, ip: str, timeout: float) -> str | None:
    """The client's forward-confirmed reverse DNS name (FCrDNS: a PTR name whose A/AAAA include
    IP), or None — what Postfix calls the client name (``unknown`` without one). The answers
    come from LOOKUP's cache when `ClientDns` asked already."""
    names = await lookup.ptr(ip, timeout)
    for name in (names or [])[:MAX_PTR_NAMES]:
        if any(_same_ip(a, ip) for a in await lookup.addresses(name, timeout) or ()):
            return name
    return None


class ClientDns:
    name = "CLIENT_DNS"

    def __init__(self, lookup: Lookup, hostname: str) -> None:
        self.lookup = lookup
        self.hostname = hostname.lower().rstrip(".")

    async def check(self, ctx: Context) -> list[Hit]:
        hits = self._helo(ctx)
        names = await self.lookup.ptr(ctx.ip, ctx.remaining())
        if names == []:
            hits.append(
                Hit("RDNS_NONE", SCORES["RDNS_NONE"], clean_reason(f"client {ctx.ip} has no reverse DNS"))
            )
        elif names:
            forward = await asyncio.gather(
                *(self.lookup.addresses(n, ctx.remaining()) for n in names[:MAX_PTR_NAMES])
            )
            if all(f is not None for f in forward) and not any(
                _same_ip(a, ctx.ip) for f in forward if f for a in f
            ):
                hits.append(
                    Hit(
                        "FCRDNS_FAIL",
                        SCORES["FCRDNS_FAIL"],
                        clean_reason(
                            f"reverse DNS of {ctx.ip} is {names[0]}, which does not resolve back to it"
                        ),
                    )
                )
        return hits

    def _helo(self, ctx: Context) -> list[Hit]:
        helo = ctx.helo.strip().lower().rstrip(".")
        if helo.startswith("[") and helo.endswith("]"):
            literal = helo[1:-1].removeprefix("ipv6:")
            if not _same_ip(literal, ctx.ip):
                return [
                    Hit(
                        "HELO_IP_MISMATCH",
                        SCORES["HELO_IP_MISMATCH"],
                        clean_reason(f"HELO {ctx.helo} is not the client's address {ctx.ip}"),
                    )
                ]
            return []
        if helo == self.hostname:
            return [
                Hit(
                    "HELO_OURS", SCORES["HELO_OURS"], clean_reason(f"the client claims to be us ({ctx.helo})")
                )
            ]
        if "." not in helo or helo.replace(".", "").isdigit():
            return [
                Hit(
                    "HELO_NOT_FQDN",
                    SCORES["HELO_NOT_FQDN"],
                    clean_reason(f"HELO {ctx.helo!r} is not a full domain name"),
                )
            ]
        return []
