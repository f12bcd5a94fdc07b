"""The ``Authentication-Results:`` header field (RFC 8601) for SPF, DKIM, DMARC and ARC results.

Built by the receiving MTA for the MDA and the reader; the authserv-id is our hostname
(RFC 8601 §2.5). Any ``Authentication-Results`` carrying our authserv-id that arrived with the
message must be removed before ours is added (RFC 8601 §5) — :func:`strip_forged` does that.

Invariants: values are ASCII; untrusted parts (domains, selectors) are reduced to the
characters a domain name or token can hold, so a field can never be forged through them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailhouse.mailauth.arc import ArcResult
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.dmarc import DmarcResult
from mailhouse.mailauth.spf import SpfResult
from mailhouse.message.headers import split_header_block

__all__ = ["build", "field", "strip_forged"]

_TOKEN = re.compile(r"[^A-Za-z0-9.\-_]")


def _clean(s: str) -> str:
    return _TOKEN.sub("", s)[:253] or "unknown"


def build(
    authserv_id: str,
    spf: SpfResult | None,
    dkim: Sequence[DkimResult] | None,
    dmarc: DmarcResult | None = None,
    arc: ArcResult | None = None,
    arc_override: str = "",
) -> str:
    """The field *value*: ``authserv-id; spf=...; dkim=...; dmarc=...; arc=...`` (or ``; none``,
    RFC 8601 §2.2). ARC_OVERRIDE names the trusted sealer whose chain rescued a DMARC failure."""
    parts: list[str] = []
    if spf is not None:
        ptype = "smtp.mailfrom" if spf.identity == "mailfrom" else "smtp.helo"  # RFC 8601 §2.7.2
        parts.append(f"spf={_clean(spf.result)} {ptype}={_clean(spf.domain)}")
    if dkim is not None:
        if not dkim:
            parts.append("dkim=none")  # RFC 8601 §2.7.1: the message was not signed
        for r in dkim:
            # RFC 8601 §2.7.1: header.d and header.s identify the signature; header.a the algorithm
            parts.append(
                f"dkim={_clean(r.result)} header.d={_clean(r.domain)} header.s={_clean(r.selector)}"
                f" header.a={_clean(r.algorithm)}"
            )
    if dmarc is not None:
        # RFC 7489 §11.2: method dmarc, ptype header, property from; the policy and the
        # disposition in a comment, as Gmail and OpenDMARC write them
        notes = [f"p={dmarc.policy.value}"] if dmarc.policy is not None else []
        if dmarc.result == "fail" or dmarc.policy is not None:
            notes.append(f"dis={dmarc.disposition.value}")
        if arc_override:
            notes.append(f"arc-override={_clean(arc_override)}")  # RFC 7489 §7.2.1 local_policy
        comment = f" ({' '.join(notes)})" if notes else ""
        hfrom = f" header.from={_clean(dmarc.from_domain)}" if dmarc.from_domain else ""
        parts.append(f"dmarc={_clean(dmarc.result)}{comment}{hfrom}")
    if arc is not None:
        # RFC 8617 §7.1: method arc; the newest sealer in a comment
        sealer = f" (as.d={_clean(arc.sealer)})" if arc.sealer and arc.result != "none" else ""
        parts.append(f"arc={_clean(arc.result)}{sealer}")
    if not parts:
        return f"{_clean(authserv_id)}; none"
    return f"{_clean(authserv_id)};\r\n\t" + ";\r\n\t".join(parts)


def field(
    authserv_id: str,
    spf: SpfResult | None,
    dkim: Sequence[DkimResult] | None,
    dmarc: DmarcResult | None = None,
    arc: ArcResult | None = None,
    arc_override: str = "",
) -> bytes:
    """The whole header line, CRLF-terminated, to prepend."""
    value = build(authserv_id, spf, dkim, dmarc, arc, arc_override)
    return b"Authentication-Results: " + value.encode("ascii") + b"\r\n"


def strip_forged(message: bytes, authserv_id: str) -> bytes:
    """Remove incoming Authentication-Results fields that claim our authserv-id (RFC 8601 §5)."""
    fields, spans, _ = split_header_block(message)
    ours = authserv_id.lower().encode()
    cut = []
    for (name, value), span in zip(fields, spans, strict=True):
        if name.lower() != b"authentication-results":
            continue
        sid = re.sub(rb"\([^)]*\)", b"", value).strip().split(b";", 1)[0].strip().split()[:1]
        if sid and sid[0].lower() == ours:
            cut.append(span)
    if not cut:
        return message
    out, pos = [], 0
    for s, e in cut:
        out.append(message[pos:s])
        pos = e
    out.append(message[pos:])
    return b"".join(out)
