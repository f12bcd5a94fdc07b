"""REQUIRETLS (RFC 8689) on the way out: the queue's decisions for one message, in one place.

- A message received with ``MAIL FROM:<…> REQUIRETLS`` (flag ``requiretls`` in the queue entry's
  extra fields, set by `QueueRunner.enqueue`) goes only to a next hop reached over TLS whose
  certificate verified against its name (PKIX; the MX name for MX delivery, RFC 8689 §4.2.1 item
  2) and that advertises REQUIRETLS (item 3); the flag is passed on in MAIL FROM (item 4). No
  such hop: the message is returned at once — ``5.7.10`` when TLS could not be had or verified,
  ``5.7.30`` when the hop does not offer REQUIRETLS (§5) — never sent in the clear or to an
  unverified server, never downgraded.
- ``TLS-Required: No`` in the header (§4.3), without REQUIRETLS: the sender asks that the
  recipient domain's policies (MTA-STS, DANE) not block delivery; TLS is still attempted and
  verified where possible, failures are only logged. With REQUIRETLS the field is ignored (§4.3).
"""

from __future__ import annotations

from mailhouse.smtpclient.client import SmtpError

FLAG = "requiretls"  # QueueEntry.extra key
HEADER_SCAN = 64 * 1024  # only the header section is read for TLS-Required


def is_required(extra: dict[str, str]) -> bool:
    return extra.get(FLAG) == "1"


def tls_mode(route_tls: str | None) -> str:
    """The client TLS mode for a REQUIRETLS message: verified always (implicit TLS kept)."""
    return "implicit" if route_tls == "implicit" else "required"


def refusal(e: SmtpError, host: str) -> str | None:
    """The 5.7.10 reply when connection error E means no verified TLS to HOST, else None
    (a connection that failed for another reason is deferred as usual). Every TLS failure of
    the client — no STARTTLS, handshake, PKIX or DANE verification — is a 4.7.x reply (RFC 3463
    §3.8: security or policy status), so any such reply counts."""
    parts = e.reply.split(" ", 2)
    if len(parts) == 3 and parts[1].startswith("4.7."):
        return f"550 5.7.10 REQUIRETLS: no verified TLS to {host} ({parts[2]})"  # RFC 8689 §5
    return None


def unsupported(host: str) -> str:
    return f"550 5.7.30 REQUIRETLS support required: {host} does not offer REQUIRETLS"  # RFC 8689 §5


def tls_optional(message: bytes) -> bool:
    """Whether the header section carries ``TLS-Required: No`` (RFC 8689 §4.3; case-insensitive)."""
    end = message.find(b"\r\n\r\n", 0, HEADER_SCAN)
    head = message[: end if end >= 0 else HEADER_SCAN]
    for line in head.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ").split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"tls-required":
            return value.strip().lower() == b"no"
    return False
