"""Connection and login commands: STARTTLS, LOGIN, AUTHENTICATE, UNAUTHENTICATE, ENABLE, COMPRESS.

RFCs: RFC 9051 §6.2.1 (STARTTLS), §6.2.2 (AUTHENTICATE; ``+ base64`` challenges, ``*`` cancels),
§6.2.3 (LOGIN; LOGINDISABLED, CAPABILITY in the OK), §7.1 (PRIVACYREQUIRED); RFC 4959
(SASL-IR); RFC 5530 §3 (AUTHENTICATIONFAILED); RFC 5161 (ENABLE); RFC 7162 §3.2.3 (QRESYNC
implies CONDSTORE); RFC 4978 (COMPRESS=DEFLATE); RFC 8437 (UNAUTHENTICATE); CVE-2011-0411.

Invariants:

* LOGIN/AUTHENTICATE are refused on a plaintext connection unless ``[auth] allow_plaintext``
  (LOGINDISABLED advertised, RFC 9051 §6.2.3 / §7.2.2); failures wait the shared per-IP delay
  of ``accounts.throttle`` (inside ``svc.auth``).
* Plaintext pipelined after STARTTLS is discarded, never executed; bytes pipelined after
  COMPRESS are fed to the inflater.
* UNAUTHENTICATE leaves nothing of the account behind: selected mailbox, NOTIFY, ENABLEd
  extensions are dropped; TLS and compression stay (RFC 8437 §3).
* Credentials and SASL responses never reach the log.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from mailhouse.accounts import sasl_flow
from mailhouse.proto import sasl
from mailhouse.proto.imap import NEED_DATA, AuthContinuation, CommandError, response
from mailhouse.proto.imap.commands import Authenticate, Compress, Enable, Login
from mailhouse.runtime import read_auth_line

from ..capabilities import ENABLEABLE, cap_code
from ..context import TLS_HANDSHAKE_TIMEOUT, Ok, State
from ..errors import AlreadyAnswered, Bad, No
from ..updates import stop as stop_notify

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command
    from mailhouse.store.api import Account

    from ..context import SessionContext


async def cmd_starttls(s: SessionContext, cmd: Command) -> Ok | None:
    if s.tls:
        raise Bad("TLS already active")
    await s.flush()
    reply = response.tagged(cmd.tag, "OK", "Begin TLS negotiation now")
    dropped_core = len(s.core.take_buffered())
    try:
        dropped = await s.conn.start_tls(reply, s.svc.tls, TLS_HANDSHAKE_TIMEOUT)
    except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as e:
        s.log.info("TLS handshake failed: %s", type(e).__name__)
        s.closing = True
        raise ConnectionError("TLS handshake failed") from e
    # RFC 9051 §6.2.1 / CVE-2011-0411: plaintext pipelined after STARTTLS is never executed
    dropped += dropped_core + len(s.core.take_buffered())
    if dropped:
        s.log.info("discarded %d octets of plaintext pipelined after STARTTLS", dropped)
    s.tls = True
    raise AlreadyAnswered()


async def cmd_login(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Login)
    if not s.login_allowed():
        # RFC 9051 §6.2.3 (LOGINDISABLED) / §7.1 PRIVACYREQUIRED
        raise No("Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED")
    user = args.userid.decode("utf-8", "replace")
    account = await s.svc.auth.check(user, args.password.decode("utf-8", "replace"), s.ip, "imap")
    if account is None:
        raise No("Authentication failed", "AUTHENTICATIONFAILED")  # RFC 5530 §3
    return _logged_in(s, account, "LOGIN")


async def cmd_authenticate(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Authenticate)
    if not s.login_allowed():
        raise No("Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED")
    mech = args.mechanism.upper()
    if mech not in sasl_flow.MECHANISMS:
        raise No("Unsupported authentication mechanism", "CANNOT")

    async def send_challenge(b64: bytes) -> None:
        s.send(response.continuation_data(b64))  # RFC 9051 §6.2.2: "+ base64"
        await s.flush()
        s.core.begin_auth_continuation(cmd.tag)

    async def auth_line() -> bytes:
        return await _auth_line(s)

    try:
        account = await sasl_flow.authenticate(
            s.svc.auth, mech, args.initial_response, send_challenge, auth_line, s.ip, "imap"
        )
    except sasl.SaslCancelled:
        raise Bad("Authentication cancelled") from None  # RFC 9051 §6.2.2
    except sasl.SaslError:
        raise Bad("Invalid SASL response") from None
    except LookupError:
        raise No("Unsupported authentication mechanism", "CANNOT") from None
    if account is None:
        s.log.info("login failed (AUTHENTICATE %s)", mech)
        raise No("Authentication failed", "AUTHENTICATIONFAILED")
    return _logged_in(s, account, f"AUTHENTICATE {mech}")


async def _auth_line(s: SessionContext) -> bytes:
    """The client's next SASL response line, on the runtime's shared AUTH line loop."""

    def poll() -> bytes | None:
        ev = s.core.next_event()
        if isinstance(ev, AuthContinuation):
            return ev.line
        if ev is NEED_DATA:
            return None
        if isinstance(ev, CommandError):
            raise sasl.SaslError("bad continuation line")
        raise sasl.SaslError("unexpected event during AUTHENTICATE")

    async def more() -> bool:
        data = await s.wait_input()
        if not data:
            return False  # EOF, idle timeout or drain: read_auth_line raises ConnectionError
        s.core.receive_data(data)
        return True

    # The core frames the line and refuses one longer than its max_line (CRLF excluded) with a
    # CommandError; this bound (CRLF included) is the same, so it never refuses more.
    return await read_auth_line(poll, more, max_octets=s.core.max_line + 2)


def _logged_in(s: SessionContext, account: Account, how: str) -> Ok:
    # issue 12 item 5 (Dovecot mail_max_userip_connections): counted only once the password was
    # right, so the refusal tells nothing a failed login would not; RFC 5530 §3 UNAVAILABLE
    if not s.conn.admit_login(str(account.id)):
        s.log.info("login of %s via %s refused: too many connections", account.address, how)
        raise No("Too many connections", "UNAVAILABLE")
    s.account = account
    s.state = State.AUTHENTICATED
    s.core.set_authenticated(True)  # the core's literal limits grow from pre-login's few KB
    s.log.info("authenticated as %s via %s", account.address, how)
    return Ok("Logged in", cap_code(s))  # RFC 9051 §6.2.3: CAPABILITY in the OK


async def cmd_unauthenticate(s: SessionContext, cmd: Command) -> Ok | None:
    """RFC 8437 §3: back to the not authenticated state, as if just connected (TLS and
    compression stay); the selected mailbox is closed without expunging."""
    if s.account is not None:
        s.log.info("unauthenticated %s", s.account.address)
    s.conn.release_login()  # issue 12 item 5: no longer counted against the account
    stop_notify(s)  # RFC 5465 NOTIFY state belongs to the login
    s.selected = None
    s.account = None
    s.enabled.clear()  # RFC 5161: ENABLEd extensions last for the login
    s.core.utf8_enabled = False
    s.core.set_authenticated(False)  # pre-login literal limits again (receiver module docstring)
    s.state = State.NOT_AUTHENTICATED
    return Ok("UNAUTHENTICATE completed", cap_code(s))


async def cmd_enable(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Enable)
    new: list[str] = []
    for cap in args.capabilities:
        want = [cap]
        if cap == "QRESYNC":  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
            want = ["CONDSTORE", "QRESYNC"]
        for c in want:
            if c in ENABLEABLE and c not in s.enabled:
                s.enabled.add(c)
                new.append("IMAP4rev2" if c == "IMAP4REV2" else c)
    s.core.utf8_enabled = s.utf8
    if s.selected is not None:
        s.selected.condstore = s.selected.condstore or s.condstore
        s.selected.qresync = s.qresync
    s.send(response.enabled(new))  # RFC 5161 §3.2: only what this command enabled
    return None


async def cmd_compress(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Compress)
    if s.conn.compressed:
        raise No("Compression already active", "COMPRESSIONACTIVE")  # RFC 4978 §3
    if args.mechanism != "DEFLATE":
        raise Bad("Unsupported compression mechanism")
    s.tagged(cmd.tag, "OK", "DEFLATE active")
    await s.flush()
    # RFC 4978 §3: compression starts right after the OK, both ways; bytes the client
    # already sent after the command are compressed data.
    s.conn.start_compress(s.core.take_buffered())
    raise AlreadyAnswered()
