"""When not to answer with a vacation reply: RFC 5230 §4.5/§4.6 and RFC 3834 §2 rules.

:func:`skip_reason` returns None when a reply may be sent, else a short reason. The per-sender
"once per :days" memory is the caller's (it lives in the store, shared by every node).
"""

from __future__ import annotations

from collections.abc import Iterable

from mailhouse.message.envelope import parse_addresses
from mailhouse.message.parse import MessagePart

__all__ = ["skip_reason", "addresses_in"]

# RFC 3834 §2 / RFC 5230 §4.6: senders that are systems, not people
_SYSTEM_LOCALPARTS = ("mailer-daemon", "postmaster", "listserv", "majordomo", "listproc")
_LIST_HEADERS = (
    "list-id",
    "list-help",
    "list-subscribe",
    "list-unsubscribe",
    "list-post",
    "list-owner",
    "list-archive",
)
# RFC 5230 §4.5: the user must be a recipient named in one of these
_RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def addresses_in(tree: MessagePart, names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for value in tree.get_all(name):
            for a in parse_addresses(value) or ():
                if a[3] is None or a[2] is None:
                    continue  # group markers
                local = a[2].decode("utf-8", "replace")
                host = a[3].decode("utf-8", "replace")
                out.append(local if host == "MISSING_DOMAIN" else f"{local}@{host}")
    return out


def skip_reason(tree: MessagePart, envelope_from: str, mine: Iterable[str]) -> str | None:
    mine_l = {m.lower() for m in mine if m}
    sender = envelope_from.lower()
    if not sender:
        return "null envelope sender (RFC 3834 §2)"
    auto = (tree.get("auto-submitted") or b"no").split(b";")[0].strip().lower()
    if auto != b"no":
        return "auto-submitted message (RFC 3834 §2)"
    prec = (tree.get("precedence") or b"").strip().lower()
    if prec in (b"bulk", b"list", b"junk"):
        return "bulk or list precedence (RFC 3834 §2)"
    if any(tree.get(h) is not None for h in _LIST_HEADERS):
        return "mailing-list message (RFC 5230 §4.6)"
    local = sender.rsplit("@", 1)[0]
    if local in _SYSTEM_LOCALPARTS or local.startswith("owner-") or local.endswith("-request"):
        return "system sender (RFC 3834 §2)"
    if sender in mine_l:
        return "sender is the user (RFC 5230 §4.5)"
    if mine_l and not any(a.lower() in mine_l for a in addresses_in(tree, _RECIPIENT_HEADERS)):
        return "user not named in To/Cc/Bcc (RFC 5230 §4.5)"
    return None
