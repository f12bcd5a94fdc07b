"""The SASL line loop of an AUTH exchange (RFC 4954 §4 SMTP, RFC 5034 §4 POP3, RFC 9051 §6.2.2 IMAP).

During AUTH the client answers each challenge with one base64 line (or ``*`` to cancel). The
adapter's sans-IO core frames that line; this helper is the loop around it that every adapter
wrote alike: ask the core for the next line, and while it needs more input wait for the client —
with the adapter's idle timeout and drain handling — until the line is complete.

Invariants: a line longer than ``max_octets`` (CRLF included) is refused with ``SaslError``
(the cores enforce the same limit as they frame; this is the runtime's own bound); an EOF, idle
timeout or drain during the exchange raises ``ConnectionError``; SASL responses are never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mailhouse.proto import sasl


async def read_auth_line(
    poll: Callable[[], bytes | None],
    more: Callable[[], Awaitable[bool]],
    *,
    max_octets: int,
) -> bytes:
    """Return the client's next SASL response line (without CRLF).

    POLL returns the line when the core has one and None when it needs more input; it raises
    ``sasl.SaslCancelled`` for ``*`` and ``sasl.SaslError`` for a framing error. MORE waits for
    input and feeds the core; False means EOF, idle timeout or drain.
    """
    while True:
        line = poll()
        if line is not None:
            if len(line) + 2 > max_octets:
                raise sasl.SaslError("AUTH line too long")
            return line
        if not await more():
            raise ConnectionError("closed during AUTH")
