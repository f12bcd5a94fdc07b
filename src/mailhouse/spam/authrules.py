"""Authentication outcomes as spam rules, read from OUR Authentication-Results field.

`mailauth.inbound` prepends one ``Authentication-Results:`` with our authserv-id (the hostname)
after removing forged ones that claim it (RFC 8601 §5), so the topmost field with our id is
trustworthy and any other is not. Reading that field — rather than calling the SPF/DKIM/DMARC/ARC
code — keeps this rule independent of how the results were made: the DMARC and ARC methods
(RFC 7489 §11.2, RFC 8617 §10.1: ``dmarc=``, ``arc=``) count as soon as inbound.py records them.
"""

from __future__ import annotations

import re

from mailhouse.spam.rules import Context, Hit, clean_reason

__all__ = ["SCORES", "AuthResultsRule", "parse_ours"]

#: (method, result) → (rule name, score, reason). Failures of a mechanism the sender published
#: count; a missing record (none/neutral) says nothing. SPF as SpamAssassin 4's defaults (SPF_FAIL
#: 0.9, SPF_SOFTFAIL 0.7); DKIM and DMARC failures weigh more, as Rspamd's R_DKIM_REJECT/DMARC_POLICY_*.
SCORES: dict[tuple[str, str], tuple[str, float, str]] = {
    ("spf", "fail"): ("SPF_FAIL", 0.9, "SPF: the sending host is not allowed to send for {d}"),
    ("spf", "softfail"): ("SPF_SOFTFAIL", 0.7, "SPF: {d} says the sending host is probably not its own"),
    ("spf", "permerror"): ("SPF_PERMERROR", 0.5, "SPF: the record of {d} is broken"),
    ("spf", "pass"): ("SPF_PASS", -0.1, "SPF: the sending host is allowed to send for {d}"),
    ("dkim", "fail"): ("DKIM_FAIL", 1.5, "DKIM: the signature of {d} does not verify (altered or forged)"),
    ("dkim", "pass"): ("DKIM_VALID", -0.1, "DKIM: valid signature of {d}"),
    ("dmarc", "fail"): ("DMARC_FAIL", 3.5, "DMARC: the From domain {d} is not authenticated"),
    ("dmarc", "pass"): ("DMARC_PASS", -0.5, "DMARC: the From domain {d} is authenticated"),
    ("arc", "fail"): ("ARC_FAIL", 1.0, "ARC: the forwarding chain is broken"),
}

_COMMENT = re.compile(r"\([^()]*\)")
_RESINFO = re.compile(r"^\s*([A-Za-z0-9\-]+)\s*=\s*([A-Za-z0-9\-]+)(.*)$", re.S)
_PROP = re.compile(r"([A-Za-z0-9\-]+\.[A-Za-z0-9\-]+)\s*=\s*([^\s;]+)")


def parse_ours(values: list[str], authserv_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, result, properties) of the first field in VALUES whose authserv-id is ours."""
    ours = authserv_id.lower()
    for value in values:
        v = _COMMENT.sub("", value)
        parts = v.split(";")
        sid = parts[0].strip().split()[:1]
        if not sid or sid[0].lower() != ours:
            continue
        out: list[tuple[str, str, dict[str, str]]] = []
        for p in parts[1:]:
            m = _RESINFO.match(p)
            if m:
                props = {k.lower(): val for k, val in _PROP.findall(m.group(3))}
                out.append((m.group(1).lower(), m.group(2).lower(), props))
        return out
    return []


class AuthResultsRule:
    name = "AUTH_RESULTS"

    async def check(self, ctx: Context) -> list[Hit]:
        hits: dict[str, Hit] = {}
        for method, result, props in parse_ours(ctx.header("authentication-results"), ctx.authserv_id):
            spec = SCORES.get((method, result))
            if spec is None:
                continue
            name, score, reason = spec
            domain = (
                props.get("smtp.mailfrom")
                or props.get("smtp.helo")
                or props.get("header.d")
                or props.get("header.from")
                or "the sender"
            )
            if "@" in domain:
                domain = domain.rsplit("@", 1)[1]
            # one hit per rule: a failed and a passing DKIM signature both count, each once
            hits.setdefault(name, Hit(name, score, clean_reason(reason.format(d=domain))))
        return list(hits.values())
