"""MTA-STS (RFC 8461) for outbound delivery: discover, fetch, cache and apply a domain's policy.

RFCs: RFC 8461 §3.1 (the `_mta-sts` TXT record, `v=STSv1; id=…`), §3.2 (policy syntax),
§3.3 (HTTPS fetch of `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`: verified TLS, 200
only, no redirects, text/plain), §4.1 (MX host matching, `*.` covers one label), §4.2
(certificate must verify), §5 (enforce / testing / none), §5.1 (a cached policy is used
when discovery or fetch fails), §10.2 (size and time limits).

Invariants:
- Policies are cached in the store's shared marks (`mta-sts:DOMAIN`, expiring at fetch time
  + max_age), so every node and worker sees one cache; the fetch happens only when the TXT
  id differs from the cached one, or when the cached policy is older than half its max_age
  (refresh before expiry); a failed fetch keeps the cached policy (§5.1).
- The fetch uses verified TLS (system store + `[tls] ca_file`), at most `MAX_POLICY_BYTES`
  of body, `[mta_sts] fetch_timeout` seconds in all, and never follows a redirect.
- `[mta_sts] resolve` maps a policy host to "ip:port" (a test/ops override of DNS and port 443).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from mailhouse.proto.mtasts import WELL_KNOWN, Mode, Policy, PolicyError, mx_matches, parse_policy, parse_txt
from mailhouse.smtpclient import tlsrpt
from mailhouse.store.api import Limits

__all__ = [
    "Mode",
    "MtaSts",
    "Policy",
    "PolicyError",
    "fetch_policy_text",
    "mx_matches",
    "parse_policy",
    "parse_txt",
]

log = logging.getLogger(__name__)

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: "reasonable" limit; Postfix-TLSpol and mox use 64 KiB
MAX_HEADER_BYTES = 16 * 1024
TXT_MEMO_SECONDS = 60.0  # in-process memo of the TXT answer (one DNS query per minute per domain)
MARK_PREFIX = "mta-sts:"


def _encode(p: Policy) -> str:
    return json.dumps(
        {"id": p.id, "mode": p.mode.value, "mx": list(p.mx), "max_age": p.max_age, "at": p.fetched}
    )


def _decode(domain: str, value: str) -> Policy | None:
    try:
        d = json.loads(value)
        return Policy(
            domain, str(d["id"]), Mode(d["mode"]), tuple(d["mx"]), int(d["max_age"]), float(d["at"])
        )
    except (ValueError, KeyError, TypeError):
        return None


async def fetch_policy_text(domain: str, address: str, port: int, ctx: ssl.SSLContext, timeout: float) -> str:
    """GET the policy over verified HTTPS (RFC 8461 §3.3); PolicyError on anything but a
    200 text/plain answer within the size and time limits."""
    host = f"mta-sts.{domain}"
    try:
        return await asyncio.wait_for(_get(host, address, port, ctx), timeout)
    except TimeoutError:
        raise PolicyError(f"fetching {host} timed out after {timeout:g}s") from None
    except ssl.SSLCertVerificationError as e:
        raise PolicyError(f"certificate of {host} does not verify: {e.verify_message}") from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        raise PolicyError(f"fetching {host} failed: {type(e).__name__}") from None


async def _get(host: str, address: str, port: int, ctx: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection(
        address, port, ssl=ctx, server_hostname=host, limit=MAX_HEADER_BYTES
    )
    try:
        writer.write(
            f"GET {WELL_KNOWN} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mailhouse\r\n"
            "Accept: text/plain\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise PolicyError("not an HTTP answer")
        if parts[1] != "200":
            # §3.3: "HTTP 3xx redirects MUST NOT be followed"; anything but 200 is a failure
            raise PolicyError(f"HTTP status {parts[1]} from {host}")
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        if not headers.get("content-type", "").lower().startswith("text/plain"):  # §3.2
            raise PolicyError(f"policy from {host} is not text/plain")
        length = headers.get("content-length")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _chunked(reader)
        elif length is not None:
            if not length.isdigit() or int(length) > MAX_POLICY_BYTES:
                raise PolicyError(f"policy from {host} is larger than {MAX_POLICY_BYTES} bytes")
            body = await reader.readexactly(int(length))
        else:
            body = await reader.read(MAX_POLICY_BYTES + 1)
            while len(body) <= MAX_POLICY_BYTES and (more := await reader.read(MAX_POLICY_BYTES + 1)):
                body += more
        if len(body) > MAX_POLICY_BYTES:
            raise PolicyError(f"policy from {host} is larger than {MAX_POLICY_BYTES} bytes")
        return body.decode("utf-8")
    finally:
        writer.close()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";")[0].strip()
        size = int(size_line, 16)
        if size == 0:
            return body
        if len(body) + size > MAX_POLICY_BYTES:
            raise PolicyError(f"policy is larger than {MAX_POLICY_BYTES} bytes")
        body += await reader.readexactly(size)
        await reader.readexactly(2)


class PolicyInvalid(PolicyError):
    """The policy was fetched but does not parse (RFC 8461 §3.2)."""


def _rpt_result(e: PolicyError) -> tlsrpt.ResultType:
    """RFC 8460 §4.3.2 result type of a policy that could not be used."""
    if isinstance(e, PolicyInvalid):
        return tlsrpt.ResultType.STS_POLICY_INVALID
    if "does not verify" in str(e):
        return tlsrpt.ResultType.STS_WEBPKI_INVALID
    return tlsrpt.ResultType.STS_POLICY_FETCH_ERROR


class PolicyStore(Limits, tlsrpt.RowCounter, Protocol):
    """The shared policy cache (marks) and the TLS-RPT counts."""


TxtLookup = Callable[[str], Awaitable[list[str] | None]]  # None: lookup failed (not "no record")
AddressLookup = Callable[[str], Awaitable[list[str]]]


class MtaSts:
    """Policy lookups for the queue runner (one per node; state shared through the store)."""

    def __init__(
        self,
        marks: PolicyStore,
        txt: TxtLookup,
        addresses: AddressLookup,
        ctx: ssl.SSLContext,
        *,
        resolve: Mapping[str, tuple[str, int]] | None = None,
        fetch_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.marks = marks
        self.txt = txt
        self.addresses = addresses
        self.ctx = ctx
        self.resolve = dict(resolve or {})
        self.fetch_timeout = fetch_timeout
        self.clock = clock
        self._memo: dict[str, tuple[float, str | None, bool]] = {}  # domain → (until, id, lookup ok)

    async def _txt_id(self, domain: str) -> tuple[str | None, bool]:
        now = self.clock()
        memo = self._memo.get(domain)
        if memo and memo[0] > now:
            return memo[1], memo[2]
        records = await self.txt(f"_mta-sts.{domain}")
        pid = parse_txt(records) if records is not None else None
        self._memo[domain] = (now + TXT_MEMO_SECONDS, pid, records is not None)
        return pid, records is not None

    async def policy(self, domain: str) -> Policy | None:
        """The policy to apply to mail for DOMAIN (None: no MTA-STS)."""
        domain = domain.lower().rstrip(".")
        now = self.clock()
        mark = await self.marks.get_mark(MARK_PREFIX + domain, now)
        cached = _decode(domain, mark.value) if mark else None
        pid, _ok = await self._txt_id(domain)
        if pid is None:
            # §5.1: no (usable) TXT record but a cached, unexpired policy → keep using it
            return cached
        if cached is not None and cached.id == pid and now - cached.fetched < cached.max_age / 2:
            return cached
        try:
            policy = await self._fetch(domain, pid, now)
        except PolicyError as e:
            log.warning("MTA-STS policy of %s: %s%s", domain, e, "; using the cached one" if cached else "")
            if cached is None:  # RFC 8460 §4.3.2: a policy announced but not usable
                await tlsrpt.record(
                    self.marks, tlsrpt.TlsOutcome(domain, tlsrpt.PolicyType.STS, _rpt_result(e))
                )
            return cached  # §5.1: a failed refresh keeps the cached policy
        await self.marks.set_mark(MARK_PREFIX + domain, _encode(policy), now + policy.max_age)
        log.info(
            "MTA-STS policy of %s: id=%s mode=%s mx=%s", domain, pid, policy.mode.value, ",".join(policy.mx)
        )
        return policy

    async def _fetch(self, domain: str, pid: str, now: float) -> Policy:
        host = f"mta-sts.{domain}"
        if host in self.resolve:
            address, port = self.resolve[host]
        else:
            addrs = await self.addresses(host)
            if not addrs:
                raise PolicyError(f"{host} has no address")
            address, port = addrs[0], 443
        text = await fetch_policy_text(domain, address, port, self.ctx, self.fetch_timeout)
        try:
            return parse_policy(text, domain, pid, now)
        except PolicyError as e:
            raise PolicyInvalid(str(e)) from None
