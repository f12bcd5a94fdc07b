"""The limits of one connection, named once (issue 11 item 5; DESIGN.md §Conventions 8).

Every protocol adapter builds one :class:`Limits` per connection from its own defaults and the
configuration (the idle timeouts and the message size are configurable and re-read on SIGHUP,
so new connections get the new values) and hands it to the runtime and to its sans-IO core.

Invariant: with these limits, the memory one connection can make the server hold is bounded by
``max_buffered_input`` (unparsed input, then reading pauses) + ``write_high_water`` or
``tls_write_high_water`` (output not yet taken by the kernel, then the producer waits in
``drain``) + ``max_inflate`` (one slice of decompressed input) + what the core holds for one line
or literal (``max_line``/``max_literal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: RFC 5321 §4.5.3.2.7: an SMTP server should wait at least 5 minutes for the next command.
SMTP_IDLE_TIMEOUT: Final = 300.0
#: RFC 9051 §5.4: the IMAP autologout timer is at least 30 minutes.
IMAP_IDLE_TIMEOUT: Final = 1800.0
#: RFC 1939 §3: the POP3 autologout timer is at least 10 minutes.
POP3_IDLE_TIMEOUT: Final = 600.0
#: Whole-session cap for SMTP and POP3 (issue 12 item 6): one hour, far above any real session,
#: so a client that trickles bytes or keeps issuing NOOP cannot hold a slot for ever.
SESSION_TIMEOUT: Final = 3600.0
#: Idle timer before authentication (IMAP, POP3, submission): Dovecot's login processes give
#: an unauthenticated client 3 minutes; the RFC autologout timers apply after login.
PREAUTH_TIMEOUT: Final = 180.0
#: Idle timer under stress (Postfix ``smtpd_timeout = ${stress?{10}:{300}}``).
STRESS_TIMEOUT: Final = 10.0
#: Connections per process before stress is measured against it (``[server] connection_budget``).
CONNECTION_BUDGET: Final = 1000
#: Share of the budget above which the process is under stress (Postfix's stress is ~"all
#: smtpd processes busy"; 75 % leaves room for the shortened timers to act).
STRESS_RATIO: Final = 0.75
#: Minimum transfer rate granted to a DATA/BDAT transfer on top of the per-command deadline
#: (Postfix ``smtpd_min_data_rate = 500`` octets/s with ``smtpd_per_request_deadline``).
MIN_DATA_RATE: Final = 500.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits; every field is in octets or seconds."""

    #: Longest command line the core accepts, CRLF included (RFC 5321 §4.5.3.1.4: 512 for SMTP;
    #: RFC 2449 §4: 255 for POP3; RFC 9051 sets none for IMAP, 64 KiB here as Dovecot's order).
    max_line: int = 512
    #: Longest SASL response line during AUTH/AUTHENTICATE, CRLF included (RFC 4954 §4, RFC 5034 §4:
    #: responses are base64 and can be long; the core answers "line too long" beyond it).
    max_auth_line: int = 4096
    #: Largest literal outside APPEND (RFC 9051 §4.3: the server may refuse big literals; RFC 7888).
    max_literal: int = 1024 * 1024
    #: Largest message (SMTP SIZE, RFC 1870; IMAP APPENDLIMIT, RFC 7889): from ``max_message_size``.
    max_message: int = 50 * 1024 * 1024
    #: Seconds a client may stay silent while the server waits for it (RFC 5321 §4.5.3.2.7,
    #: RFC 9051 §5.4, RFC 1939 §3); from ``[server] *_idle_timeout``.
    idle_timeout: float = SMTP_IDLE_TIMEOUT
    #: Seconds one whole command (line, or DATA/BDAT transfer plus ``len / min_data_rate``) may
    #: take from its first octet, however the client trickles it (Postfix
    #: ``smtpd_per_request_deadline``): a deadline, not an idle timer. None: idle timer only.
    command_deadline: float | None = None
    #: Octets per second a message transfer is granted beyond ``command_deadline``.
    min_data_rate: float = MIN_DATA_RATE
    #: Seconds a whole session may last (None: no cap; IMAP after login, where IDLE is long-lived).
    session_timeout: float | None = SESSION_TIMEOUT
    #: Idle timer (and session cap, for IMAP) before authentication: shorter than after it.
    preauth_timeout: float = PREAUTH_TIMEOUT
    #: Idle timer that replaces the others while the process is under stress.
    stress_timeout: float = STRESS_TIMEOUT
    #: Connections of this process above ``stress_ratio`` × this put it under stress.
    connection_budget: int = CONNECTION_BUDGET
    stress_ratio: float = STRESS_RATIO
    #: Seconds a TLS handshake (implicit TLS, RFC 8314 §3.3, or after STARTTLS/STLS) may take
    #: before the connection is dropped: a client that opens and stays mute holds no slot for long.
    tls_handshake_timeout: float = 30.0
    #: Output buffered in the transport above which the producer must wait (``drain``): asyncio's
    #: own default, so a client that reads slowly costs at most this much memory per connection.
    write_high_water: int = 64 * 1024
    #: The same over TLS: asyncio's and uvloop's own default for TLS transports (records are
    #: encrypted in larger units), so the upgrade to the runtime changed no flow-control behaviour.
    tls_write_high_water: int = 512 * 1024
    #: Seconds a write may stay blocked on a client that does not read before the connection is
    #: aborted (a stalled reader would otherwise hold its session, locks and buffers for ever).
    write_stall_timeout: float = SMTP_IDLE_TIMEOUT
    #: Unparsed input kept before reading is paused (TCP flow control pushes back on the client).
    max_buffered_input: int = 128 * 1024
    #: Octets of inflated input produced per read with COMPRESS=DEFLATE (RFC 4978): a deflate bomb
    #: costs CPU in slices, never memory; the core's line and literal limits then apply.
    max_inflate: int = 64 * 1024
    #: Input octets :meth:`Connection.read` hands a session per loop turn, and commands a session
    #: runs (:meth:`Connection.pace`) before it yields to the other connections (issue 12 item 1:
    #: one client streaming bytes or pipelining commands must not monopolise the event loop).
    read_budget: int = 64 * 1024
    commands_per_turn: int = 32
