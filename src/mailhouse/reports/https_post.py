"""TLS-RPT reports posted to an ``https:`` rua (RFC 8460 §3 "https" URI, §5.4 delivery by HTTPS).

RFCs: RFC 8460 §3 (rua may name an https URI), §5.4 (HTTP POST of the gzipped report with
``Content-Type: application/tlsrpt+gzip``; a 2xx answer is success), RFC 6125 (the server
certificate verified against the URI's host name: system store + ``[tls] ca_file``).

Invariants:
- The host name is resolved through ``[dns] nameservers`` (the same DNS as every other look-up),
  the connection goes to that address with SNI and the Host header set to the URI's host, and
  the certificate is verified for that name: never an unverified POST.
- No redirects are followed (a 3xx is a failure), and each POST is bounded by ``POST_TIMEOUT``.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx

from mailhouse.config import Config
from mailhouse.mailauth.resolvers import resolver_on
from mailhouse.tls import client_context

POST_TIMEOUT = 30.0  # seconds for one POST, connection included
CONTENT_TYPE = "application/tlsrpt+gzip"  # RFC 8460 §5.4, §6.4

Resolve = Callable[[str], Awaitable[list[str]]]
Post = Callable[[str, bytes], Awaitable[str | None]]


def resolver_for(cfg: Config) -> Resolve:
    """A/AAAA of a host name through CFG's `[dns] nameservers`."""
    r = resolver_on(dns.asyncresolver.Resolver, cfg.dns_nameservers, POST_TIMEOUT / 3)

    async def resolve(host: str) -> list[str]:
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                out += [rr.to_text() for rr in await r.resolve(host, rdtype, search=False)]
            except dns.exception.DNSException:
                continue
        return out

    return resolve


async def post(
    url: str, body: bytes, ctx: ssl.SSLContext, resolve: Resolve, timeout: float = POST_TIMEOUT
) -> str | None:
    """POST BODY (the gzipped report) to URL; None on success, else why it failed."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme.lower() != "https" or not host:
        return "not an https URI"
    port = parts.port or 443
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = await resolve(host)
    if not addresses:
        return f"cannot resolve {host}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = f"{host}:{parts.port}" if parts.port else host
    last = ""
    async with httpx.AsyncClient(
        verify=ctx, follow_redirects=False, timeout=timeout, trust_env=False
    ) as client:
        for ip in addresses:
            literal = f"[{ip}]" if ":" in ip else ip
            try:
                r = await client.post(
                    f"https://{literal}:{port}{path}",
                    content=body,
                    headers={"Host": netloc, "Content-Type": CONTENT_TYPE},
                    extensions={"sni_hostname": host},  # TLS to the name, not the address
                )
            except httpx.HTTPError as e:
                last = f"{ip}: {type(e).__name__}: {e}"
                continue
            if 200 <= r.status_code < 300:  # RFC 8460 §5.4: 2xx is success
                return None
            return f"HTTP {r.status_code}"  # the server answered: no other address is tried
    return last


def poster(cfg: Config) -> Post:
    """`post` with CFG's verification (system store + `[tls] ca_file`) and DNS."""
    ctx = client_context(verify=True, ca_file=cfg.tls_ca_file)
    resolve = resolver_for(cfg)

    async def send(url: str, body: bytes) -> str | None:
        return await post(url, body, ctx, resolve)

    return send
