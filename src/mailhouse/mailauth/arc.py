"""ARC (RFC 8617): verify the chain of inbound mail, and seal mail we forward, with dkimpy.

Verification (RFC 8617 §5.2) is dkimpy's ``arc_verify``; this module routes its key look-ups
through our nameservers within the message's DNS deadline (a look-up out of time, or a
DNS timeout, makes the result ``temperror`` rather than ``fail``), and reads what a DMARC
override needs (RFC 8617 §7.2.1 / RFC 7489 §7.2.1 ``local_policy``): the domain of the
newest ARC-Seal (the last sealer) and the results the oldest ARC-Authentication-Results
(``i=1``, written by the first ARC-aware hop, before any list rewrote the message) recorded.

Sealing (RFC 8617 §5.1) adds one ARC set (AAR, AMS, AS) on top of a message we forward,
with the forwarding domain's RSA DKIM key (``mailauth/dkimkeys.py``); the AAR copies our own
``Authentication-Results`` (our authserv-id), whose ``arc=`` gives the chain's ``cv=``.

Invariants: never raises on hostile input (a malformed chain is ``fail``, RFC 8617 §5.2);
blocking (DNS): call :func:`verify` from a worker thread. The whole message is needed in
memory (dkimpy hashes the body itself); only messages that carry ARC-Seal fields pay for it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dkim as dkimpy

from mailhouse.message.headers import split_header_block
from mailhouse.store.api import DkimKey

log = logging.getLogger(__name__)

__all__ = ["ArcResult", "has_chain", "oldest_results", "seal", "unfinished", "verify"]

#: RFC 8617 §4.2.1: instance values are 1..50; a chain longer than that is invalid.
MAX_INSTANCES = 50


@dataclass(frozen=True, slots=True)
class ArcResult:
    """RFC 8617 §4.4 chain validation status as an RFC 8601 ``arc=`` result."""

    result: str  # pass | fail | none | temperror
    sealer: str = ""  # d= of the newest ARC-Seal (the last hop that sealed)
    oldest: dict[str, list[str]] = field(default_factory=dict)  # method → results at i=1
    oldest_domains: dict[str, list[str]] = field(default_factory=dict)  # method → passing domains at i=1
    reason: str = ""


def has_chain(head: bytes) -> bool:
    """Whether the header section carries any ARC-Seal field (else the result is ``none``)."""
    fields, _, _ = split_header_block(head)
    return any(n.lower() == b"arc-seal" for n, _ in fields)


_INSTANCE = re.compile(rb"^\s*i\s*=\s*(\d+)\s*;")
_RESINFO = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)([^;]*)", re.IGNORECASE)
_PROP = re.compile(r"\b(header\.from|header\.d|smtp\.mailfrom|header\.i)\s*=\s*([^\s;()]+)", re.IGNORECASE)


def oldest_results(head: bytes) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(method → results, method → domains that passed) of the ``i=1`` ARC-Authentication-Results."""
    fields, _, _ = split_header_block(head)
    results: dict[str, list[str]] = {}
    domains: dict[str, list[str]] = {}
    for n, v in fields:
        m = _INSTANCE.match(v)
        if n.lower() != b"arc-authentication-results" or not m or m.group(1) != b"1":
            continue
        text = re.sub(r"\([^)]*\)", "", v[m.end() :].decode("utf-8", "replace"))
        for meth, res, props in _RESINFO.findall(text):
            meth, res = meth.lower(), res.lower()
            results.setdefault(meth, []).append(res)
            if res == "pass":
                for _p, val in _PROP.findall(props):
                    domains.setdefault(meth, []).append(val.rpartition("@")[2].lower().rstrip("."))
        break  # RFC 8617 §4.1.1: exactly one AAR per instance
    return results, domains


def unfinished(why: str) -> ArcResult:
    return ArcResult("temperror", reason=why)


def verify(message: bytes, dnsfunc: Callable[..., bytes | None], deadline: float | None = None) -> ArcResult:
    """Validate the ARC chain of MESSAGE (RFC 8617 §5.2); key look-ups by DNSFUNC before DEADLINE."""
    if not has_chain(message.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"):
        return ArcResult("none")
    seen: dict[str, str] = {}

    def tracking(name: bytes, timeout: float = 5.0) -> bytes | None:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                seen["temperror"] = "DNS budget exhausted"
                raise dkimpy.DnsTimeoutError(seen["temperror"])
            timeout = min(timeout, left)
        try:
            return dnsfunc(name, timeout=timeout)
        except dkimpy.DnsTimeoutError as e:
            seen["temperror"] = str(e)
            raise

    try:
        cv, data, reason = dkimpy.arc_verify(message, dnsfunc=tracking)
    except Exception as e:  # dkimpy on hostile input: a broken chain, never a lost message
        log.info("ARC verification error: %s", e)
        return ArcResult("fail", reason=f"unverifiable chain: {type(e).__name__}")
    head = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    oldest, domains = oldest_results(head)
    sealer = data[0]["as-domain"].decode("ascii", "replace").lower() if data else ""
    if cv == dkimpy.CV_Pass:
        return ArcResult("pass", sealer, oldest, domains, str(reason))
    if "temperror" in seen:
        return ArcResult("temperror", sealer, reason=seen["temperror"])
    # None: an ARC-Seal said cv=fail (the chain ended); CV_Fail: a set did not validate
    return ArcResult("fail", sealer, reason=str(reason))


def seal(message: bytes, key: DkimKey, authserv_id: str, *, now: float | None = None) -> bytes:
    """The next ARC set (AAR, AMS, AS; RFC 8617 §5.1) for MESSAGE, CRLF-terminated fields, or
    b"" when dkimpy cannot seal it (no Authentication-Results of ours, a chain too long)."""
    # RFC 8617 §4.1.3: cv= is none, pass or fail; a chain we could not check (temperror) is
    # not sealed at all rather than sealed with an invalid status
    fields_, _, _ = split_header_block(message.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    ours = [
        v
        for n, v in fields_
        if n.lower() == b"authentication-results"
        and v.strip().lower().startswith(authserv_id.lower().encode() + b";")
    ]
    cv = re.findall(rb"\barc=([a-z]+)", b" ".join(ours).lower())
    if not ours or any(c not in (b"none", b"pass", b"fail") for c in cv):
        return b""
    try:
        fields = dkimpy.arc_sign(
            message,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            authserv_id.encode("ascii"),
            signature_algorithm=b"rsa-sha256",  # RFC 8617 §5.1: rsa-sha256 is the one algorithm
            timestamp=int(now) if now is not None else None,
            linesep=b"\r\n",
        )
    except Exception as e:  # a message we cannot seal is still forwarded, unsealed
        log.info("ARC seal for %s failed: %s", key.domain, e)
        return b""
    return b"".join(fields)
