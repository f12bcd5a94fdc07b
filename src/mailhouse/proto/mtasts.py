"""MTA-STS policy syntax (RFC 8461), sans-IO: the `_mta-sts` TXT record, the policy file, MX matching.

Used both ways: queue/mtasts.py applies the policies other domains publish, and the web face serves
the one Mailhouse publishes for its hosted domains (`render_policy`, `policy_id`).
RFCs: RFC 8461 §3.1 (TXT record), §3.2 (policy syntax), §4.1 (MX host matching).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

MAX_AGE_LIMIT = 31557600  # RFC 8461 §3.2: max_age up to 31557600 seconds (about 1 year)
WELL_KNOWN = "/.well-known/mta-sts.txt"  # RFC 8461 §3.3


class Mode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


class PolicyError(Exception):
    """A policy that cannot be used (malformed, too large, fetch failed)."""


@dataclass(frozen=True, slots=True)
class Policy:
    domain: str
    id: str  # the TXT id this policy was fetched under
    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    fetched: float

    def matches(self, host: str) -> bool:
        return any(mx_matches(host, p) for p in self.mx)


def mx_matches(host: str, pattern: str) -> bool:
    """RFC 8461 §4.1: exact (case-insensitive) match, or `*.` standing for exactly one label."""
    host, pattern = host.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return host == pattern


def parse_txt(records: Sequence[str]) -> str | None:
    """RFC 8461 §3.1: the id of the single `v=STSv1` record; None when there is not exactly one."""
    found = [r for r in records if r.startswith("v=STSv1")]
    if len(found) != 1:
        return None
    fields = {}
    for part in found[0].split(";"):
        k, sep, v = part.strip().partition("=")
        if sep:
            fields[k.strip()] = v.strip()
    pid = fields.get("id", "")
    # §3.1: id is 1*32(ALPHA / DIGIT)
    if not (1 <= len(pid) <= 32 and pid.isascii() and pid.isalnum()):
        return None
    return pid


def parse_policy(text: str, domain: str, pid: str, fetched: float) -> Policy:
    """RFC 8461 §3.2: `key: value` lines (CRLF or LF); version, mode and max_age required;
    at least one mx unless mode is none; unknown keys ignored."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise PolicyError(f"malformed policy line {line[:40]!r}")
        fields.setdefault(k.strip(), []).append(v.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("policy version is not STSv1")
    try:
        mode = Mode(fields.get("mode", [""])[0])
    except ValueError:
        raise PolicyError("policy mode is not enforce, testing or none") from None
    age = fields.get("max_age", [""])[0]
    if not (age.isdigit() and len(age) <= 10):
        raise PolicyError("policy max_age missing or not a number")
    mx = tuple(fields.get("mx", []))
    if mode is not Mode.NONE and not mx:
        raise PolicyError("policy has no mx")
    return Policy(domain, pid, mode, mx, min(int(age), MAX_AGE_LIMIT), fetched)


def render_policy(mode: Mode, mx: Sequence[str], max_age: int) -> str:
    """The policy file for MODE, MX patterns and MAX_AGE (RFC 8461 §3.2, CRLF line ends)."""
    lines = ["version: STSv1", f"mode: {mode.value}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "".join(line + "\r\n" for line in lines)


def policy_id(text: str) -> str:
    """The TXT id for a policy text (§3.1: 1*32 ALPHA/DIGIT): derived from its content, so it
    changes exactly when the policy does and senders fetch the new one."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]
