"""ManageSieve listener ``managesieve`` (RFC 5804, port 4190, STARTTLS): users upload, check,
list and activate their Sieve scripts.

One asyncio adapter over the sans-IO core ``proto.managesieve`` on the connection runtime
(pull mode: ``Connection.read``), with one state gate (``ALLOWED``) and one dispatch table
(``COMMANDS``). Scripts live in the store (``store/sieve.py``: names, the one active script,
quotas); the Sieve language (``CHECKSCRIPT``/``PUTSCRIPT`` validation, the ``SIEVE``
capability) comes from the ``ScriptChecker`` the server is given.

Invariants
----------
* AUTHENTICATE is refused before TLS unless ``[auth] allow_plaintext`` is set — the rule IMAP and
  POP3 apply (RFC 5804 §2.1, §2.2); SASL is not advertised there either.
* Logins go through the same ``Authenticator`` as IMAP (``accounts/sasl_flow.py``): the shared
  throttle, penalties and bans; a banned address is refused at connect with ``BYE``.
* Plaintext pipelined after STARTTLS is never executed (``Connection.start_tls`` + the core's
  ``start_tls_done``; CVE-2011-0411 class); the capabilities are re-sent under TLS (§2.2).
* A script is stored only when it compiled (§2.6) and fits the quota (``[sieve] max_scripts``,
  ``max_script_size``; §1.3 ``QUOTA/*``), checked in the store's transaction.
* Errors are caught once per command (``_dispatch``): the store's ``SieveScriptError`` becomes
  ``NO (CODE)``, an unavailable store ``NO (TRYLATER)``, a bug is logged and answered
  ``NO (TRYLATER)``; the session goes on. An over-long line ends it with ``BYE``.
* Script contents and SASL responses never reach the log.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from mailhouse import metrics
from mailhouse.accounts import sasl_flow
from mailhouse.config import Listener
from mailhouse.delivery.sieve import sieve_limits
from mailhouse.log import ConnLogger
from mailhouse.managesieve.checker import ScriptChecker, SieveChecker
from mailhouse.proto import managesieve as core
from mailhouse.proto import sasl
from mailhouse.proto.managesieve import Code, Command, Kind, response
from mailhouse.runtime import Connection, Limits, read_auth_line, start_listener
from mailhouse.runtime.connlimits import ConnectionGate, Refusal, policy_from_config
from mailhouse.store.api import Account, SieveProblem, SieveScriptError, StoreUnavailable

if TYPE_CHECKING:
    from mailhouse.services import Services

log = logging.getLogger(__name__)

IMPLEMENTATION: Final = "Mailhouse"
TLS_HANDSHAKE_TIMEOUT: Final = 30.0
#: Seconds between drain checks while the session waits for the client.
DRAIN_POLL: Final = 0.5
#: Idle timer after login (before it, ``[server] preauth_timeout``): Pigeonhole's managesieve
#: inherits the IMAP idle time; a script editor is idle between saves for minutes, not hours.
IDLE_TIMEOUT: Final = 30 * 60.0
#: Longest SASL response string (base64 of a SCRAM or PLAIN message).
MAX_AUTH_LINE: Final = 8192
#: Input buffered beyond the current command before reading pauses (a script literal is bounded
#: by max_script_size in the core; this bounds what waits behind it).
MAX_PENDING_INPUT: Final = 64 * 1024

#: RFC 5804 §1.3 problems → the response codes the client sees.
PROBLEM_CODES: Final = {
    SieveProblem.NONEXISTENT: (Code.NONEXISTENT, "There is no script by that name"),
    SieveProblem.ACTIVE: (Code.ACTIVE, "You may not delete the active script"),
    SieveProblem.ALREADYEXISTS: (Code.ALREADYEXISTS, "A script by that name exists already"),
    SieveProblem.MAXSCRIPTS: (Code.QUOTA_MAXSCRIPTS, "Too many scripts"),
    SieveProblem.MAXSIZE: (Code.QUOTA_MAXSIZE, "Script is too large"),
}
TRY_LATER: Final = response(Kind.NO, Code.TRYLATER, "Temporary server failure, try again later")


class State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"


_ANY = frozenset({"CAPABILITY", "LOGOUT", "NOOP"})
#: RFC 5804 §2: STARTTLS and AUTHENTICATE before login; the script commands after it.
ALLOWED: Final[dict[State, frozenset[str]]] = {
    State.NOT_AUTHENTICATED: _ANY | {"AUTHENTICATE", "STARTTLS"},
    State.AUTHENTICATED: _ANY
    | {
        "HAVESPACE",
        "PUTSCRIPT",
        "LISTSCRIPTS",
        "SETACTIVE",
        "GETSCRIPT",
        "DELETESCRIPT",
        "RENAMESCRIPT",
        "CHECKSCRIPT",
        "UNAUTHENTICATE",
    },
}


class No(Exception):
    """A command refused: REPLY is the encoded NO."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reply = reply


def limits_for(svc: Services) -> Limits:
    """The runtime limits of one ManageSieve connection (per connection: a reload applies to new ones)."""
    return Limits(
        max_line=core.MAX_LINE,
        max_auth_line=MAX_AUTH_LINE,
        max_literal=svc.cfg.sieve.max_script_size,  # §1.3 QUOTA/MAXSIZE: bigger is never buffered
        idle_timeout=IDLE_TIMEOUT,
        session_timeout=svc.cfg.session_timeout,
        preauth_timeout=svc.cfg.preauth_timeout,
        stress_timeout=svc.cfg.stress_timeout,
        connection_budget=svc.cfg.connection_budget,
        write_stall_timeout=IDLE_TIMEOUT,
        tls_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
        max_buffered_input=MAX_PENDING_INPUT,
    )


class SieveSession:
    """One ManageSieve connection."""

    def __init__(self, svc: Services, checker: ScriptChecker, conn: Connection) -> None:
        self.svc = svc
        self.cfg = svc.cfg
        self.checker = checker
        self.conn = conn
        self.cid = secrets.token_hex(4)
        self.log = ConnLogger(log, {"cid": self.cid})
        self.ip = conn.peer_ip
        self.tls = conn.tls
        self.core = core.ManageSieveServerProtocol(max_literal=svc.cfg.sieve.max_script_size)
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.closing = False
        self._out: list[bytes] = []

    # ------------------------------------------------------------------ plumbing
    def reply(self, data: bytes) -> None:
        self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            self.conn.writelines(out)
            await self.conn.drain()

    async def _read(self) -> bool:
        """Wait for more input and feed the core; False on EOF, timeout or drain (then BYE sent)."""
        await self.flush()
        preauth = self.account is None
        try:
            # the idle timer (and, before login, the login deadline) from now: RFC 5804 §1.3 BYE
            deadline = self.conn.loop.time() + self.conn.wait_time(preauth=preauth)
        except TimeoutError:
            self.reply(response(Kind.BYE, text="Session time exceeded"))
            return False
        while True:
            if self.svc.draining:
                self.reply(response(Kind.BYE, Code.TRYLATER, "Server shutting down"))  # RFC 5804 §1.3
                return False
            left = deadline - self.conn.loop.time()
            if left <= 0:
                self.reply(response(Kind.BYE, text="Disconnected for inactivity"))
                return False
            try:
                data = await self.conn.read(min(left, DRAIN_POLL))  # short waits: a drain is seen
            except TimeoutError:
                continue
            if not data:
                return False
            self.core.receive_data(data)
            return True

    async def run(self) -> None:
        self.log.info("connect from %s", self.ip)
        try:
            self.reply(self._capabilities())  # RFC 5804 §1.7: the greeting is the capability list
            self.reply(response(Kind.OK, text=f"{IMPLEMENTATION} ManageSieve ready"))
            while not self.closing:
                ev = self.core.next_event()
                if ev is core.NEED_DATA:
                    if not await self._read():
                        break
                    continue
                if isinstance(ev, core.CommandError):
                    self.reply(ev.reply)
                    if ev.fatal:
                        break
                    continue
                if isinstance(ev, core.SaslResponse | core.SaslCancelled):
                    self.reply(response(Kind.NO, text="Unexpected SASL response"))
                    continue
                await self._dispatch(ev)
                await self.conn.pace()
        except (ConnectionError, ssl.SSLError, TimeoutError) as e:
            self.log.info("connection lost: %s", type(e).__name__)
        finally:
            try:
                await asyncio.wait_for(self.flush(), 5)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                pass
            if self.account is not None:
                self.conn.release_login()
            await self.conn.close()
            self.log.info("disconnect from %s", self.ip)

    async def _dispatch(self, cmd: Command) -> None:
        started = time.perf_counter()
        try:
            if cmd.name not in ALLOWED[self.state]:
                authed = self.state is State.AUTHENTICATED
                raise No(response(Kind.NO, text="Already authenticated" if authed else "Authenticate first"))
            await self.COMMANDS[cmd.name](self, cmd)
        except No as e:
            self.reply(e.reply)
        except SieveScriptError as e:
            code, text = PROBLEM_CODES[e.problem]
            self.reply(response(Kind.NO, code, text))
        except StoreUnavailable as e:
            self.log.warning("store unavailable handling %s: %s", cmd.name, e)
            self.reply(TRY_LATER)
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception:
            self.log.exception("internal error handling %s", cmd.name)
            self.reply(TRY_LATER)
        metrics.observe_since(metrics.COMMAND_SECONDS, started, "managesieve", cmd.name.lower())

    def _login_allowed(self) -> bool:
        return self.tls or self.cfg.allow_plaintext_auth

    def _capabilities(self) -> bytes:
        """RFC 5804 §1.7; SASL only where a login is allowed, STARTTLS only before TLS."""
        caps: list[tuple[str, str | None]] = [("IMPLEMENTATION", IMPLEMENTATION)]
        if self.state is State.NOT_AUTHENTICATED:
            caps.append(("SASL", " ".join(sasl_flow.MECHANISMS) if self._login_allowed() else ""))
        caps.append(("SIEVE", " ".join(self.checker.extensions)))
        if not self.tls and self.state is State.NOT_AUTHENTICATED:
            caps.append(("STARTTLS", None))
        caps.append(("MAXREDIRECTS", str(self.cfg.sieve.max_redirects)))
        caps.append(("NOTIFY", "mailto"))  # RFC 5804 §1.7: enotify methods (RFC 5435/5436)
        if self.account is not None:
            caps.append(("OWNER", self.account.address))  # RFC 5804 §1.7 (as Pigeonhole)
        caps.append(("UNAUTHENTICATE", None))  # RFC 5804 §2.14: advertised, so clients may use it
        caps.append(("VERSION", "1.0"))  # RFC 5804 §1.7
        return core.capability_lines(caps)

    def _account(self) -> Account:
        assert self.account is not None
        return self.account

    @staticmethod
    def _name(cmd: Command, i: int = 0) -> str:
        name = cmd.string(i)
        if not core.valid_script_name(name):  # RFC 5804 §1.6
            raise No(response(Kind.NO, text="Invalid script name"))
        return name

    def _check(self, script: str) -> tuple[str, ...]:
        """Compile SCRIPT; NO with the first error ("line N: ...", §2.6/§2.12); the warnings."""
        result = self.checker.check(script)
        if result.errors:
            raise No(response(Kind.NO, text="\n".join(result.errors)))
        return result.warnings

    def _ok(self, warnings: tuple[str, ...], text: str) -> bytes:
        if warnings:  # RFC 5804 §1.3 WARNINGS: stored, but look at what the server says
            return response(Kind.OK, Code.WARNINGS, "\n".join(warnings))
        return response(Kind.OK, text=text)

    # ------------------------------------------------------------------ any state
    async def cmd_capability(self, cmd: Command) -> None:
        self.reply(self._capabilities())
        self.reply(response(Kind.OK, text="Capability completed"))

    async def cmd_noop(self, cmd: Command) -> None:
        if cmd.args:  # RFC 5804 §2.13: the tag is echoed in a TAG response code
            self.reply(response(Kind.OK, Code.TAG, "Done", code_arg=cmd.string(0)))
        else:
            self.reply(response(Kind.OK, text="Done"))

    async def cmd_logout(self, cmd: Command) -> None:
        self.reply(response(Kind.OK, text="Logout completed"))  # RFC 5804 §2.3
        self.closing = True

    # ------------------------------------------------------------------ not authenticated
    async def cmd_starttls(self, cmd: Command) -> None:
        if self.tls:
            raise No(response(Kind.NO, text="TLS is active already"))
        await self.flush()  # earlier replies go out in plaintext, in order
        try:
            dropped = await self.conn.start_tls(
                response(Kind.OK, text="Begin TLS negotiation now"),
                self.svc.tls,
                self.conn.limits.tls_handshake_timeout,
            )
        except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as e:
            self.log.info("TLS handshake failed: %s", type(e).__name__)
            self.closing = True
            return
        dropped += self.core.start_tls_done()  # RFC 5804 §2.2 / CVE-2011-0411: plaintext forgotten
        if dropped:
            self.log.info("discarded %d octets of plaintext pipelined after STARTTLS", dropped)
        self.tls = True
        self.reply(self._capabilities())  # RFC 5804 §2.2: capabilities again, then OK
        self.reply(response(Kind.OK, text="TLS negotiation successful"))

    async def cmd_authenticate(self, cmd: Command) -> None:
        if not self._login_allowed():
            raise No(response(Kind.NO, Code.ENCRYPT_NEEDED, "Use STARTTLS first"))  # RFC 5804 §1.3
        mechanism = cmd.string(0).upper()
        if mechanism not in sasl_flow.MECHANISMS:
            raise No(response(Kind.NO, text="Unsupported authentication mechanism"))
        initial: bytes | None = None
        if len(cmd.args) > 1:  # RFC 5804 §2.1: the initial response, "" when empty
            initial = cmd.string(1).encode("ascii", "replace") or b"="

        async def send_challenge(b64: bytes) -> None:
            self.reply(core.string(b64) + b"\r\n")  # RFC 5804 §2.1: the challenge is a string
            await self.flush()
            self.core.begin_sasl()

        try:
            account = await sasl_flow.authenticate(
                self.svc.auth, mechanism, initial, send_challenge, self._auth_line, self.ip, "managesieve"
            )
        except sasl.SaslCancelled:
            raise No(response(Kind.NO, text="Authentication cancelled")) from None  # RFC 5804 §2.1
        except sasl.SaslError:
            raise No(response(Kind.NO, text="Invalid SASL response")) from None
        finally:
            self.core.end_sasl()
        if account is None:
            self.log.info("login failed (AUTHENTICATE %s)", mechanism)
            raise No(response(Kind.NO, text="Authentication failed"))
        if self.conn.admit_login(str(account.id)) is not None:  # issue 12 item 5: per-account limits
            raise No(response(Kind.NO, Code.TRYLATER, "Too many connections"))
        self.account = account
        self.state = State.AUTHENTICATED
        self.log.info("authenticated as %s via AUTHENTICATE %s", account.address, mechanism)
        self.reply(response(Kind.OK, text="Logged in"))

    async def _auth_line(self) -> bytes:
        return await read_auth_line(self._auth_poll, self._read, max_octets=MAX_AUTH_LINE)

    def _auth_poll(self) -> bytes | None:
        ev = self.core.next_event()
        if isinstance(ev, core.SaslResponse):
            return ev.data
        if isinstance(ev, core.SaslCancelled):
            raise sasl.SaslCancelled()
        if ev is core.NEED_DATA:
            return None
        raise sasl.SaslError("bad SASL response")

    # ------------------------------------------------------------------ authenticated
    async def cmd_unauthenticate(self, cmd: Command) -> None:
        self.account = None  # RFC 5804 §2.14: back to the non-authenticated state
        self.state = State.NOT_AUTHENTICATED
        self.conn.release_login()
        self.reply(response(Kind.OK, text="Unauthenticate completed"))

    async def cmd_havespace(self, cmd: Command) -> None:
        s = self.cfg.sieve
        name = self._name(cmd)
        await self.svc.store.sieve_have_space(
            self._account().id, name, cmd.number(1), s.max_scripts, s.max_script_size
        )  # RFC 5804 §2.5
        self.reply(response(Kind.OK, text="Putscript would succeed"))

    async def cmd_putscript(self, cmd: Command) -> None:
        s = self.cfg.sieve
        name = self._name(cmd)
        script = cmd.string(1)
        warnings = self._check(script)  # RFC 5804 §2.6: only a valid script is stored
        await self.svc.store.put_sieve_script(
            self._account().id, name, script, s.max_scripts, s.max_script_size, time.time()
        )
        self.reply(self._ok(warnings, "Putscript completed"))

    async def cmd_checkscript(self, cmd: Command) -> None:
        script = cmd.string(0)
        if len(script.encode("utf-8")) > self.cfg.sieve.max_script_size:
            raise No(response(Kind.NO, Code.QUOTA_MAXSIZE, "Script is too large"))
        self.reply(self._ok(self._check(script), "Script is valid"))  # RFC 5804 §2.12

    async def cmd_listscripts(self, cmd: Command) -> None:
        for sc in await self.svc.store.sieve_scripts(self._account().id):  # RFC 5804 §2.7
            self.reply(core.string(sc.name) + (b" ACTIVE" if sc.active else b"") + b"\r\n")
        self.reply(response(Kind.OK, text="Listscripts completed"))

    async def cmd_setactive(self, cmd: Command) -> None:
        name = cmd.string(0)
        if name:
            name = self._name(cmd)
        # RFC 5804 §2.8: "" deactivates every script
        await self.svc.store.set_active_sieve_script(self._account().id, name or None)
        self.reply(response(Kind.OK, text="Setactive completed"))

    async def cmd_getscript(self, cmd: Command) -> None:
        content = await self.svc.store.get_sieve_script(self._account().id, self._name(cmd))
        data = content.encode("utf-8")
        self.reply(b"{%d}\r\n" % len(data) + data + b"\r\n")  # RFC 5804 §2.9: the script as a literal
        self.reply(response(Kind.OK, text="Getscript completed"))

    async def cmd_deletescript(self, cmd: Command) -> None:
        await self.svc.store.delete_sieve_script(self._account().id, self._name(cmd))  # RFC 5804 §2.10
        self.reply(response(Kind.OK, text="Deletescript completed"))

    async def cmd_renamescript(self, cmd: Command) -> None:
        old, new = self._name(cmd, 0), self._name(cmd, 1)
        await self.svc.store.rename_sieve_script(self._account().id, old, new)  # RFC 5804 §2.11
        self.reply(response(Kind.OK, text="Renamescript completed"))

    COMMANDS: Final[dict[str, Callable[[SieveSession, Command], Awaitable[None]]]] = {
        "CAPABILITY": cmd_capability,
        "NOOP": cmd_noop,
        "LOGOUT": cmd_logout,
        "STARTTLS": cmd_starttls,
        "AUTHENTICATE": cmd_authenticate,
        "UNAUTHENTICATE": cmd_unauthenticate,
        "HAVESPACE": cmd_havespace,
        "PUTSCRIPT": cmd_putscript,
        "CHECKSCRIPT": cmd_checkscript,
        "LISTSCRIPTS": cmd_listscripts,
        "SETACTIVE": cmd_setactive,
        "GETSCRIPT": cmd_getscript,
        "DELETESCRIPT": cmd_deletescript,
        "RENAMESCRIPT": cmd_renamescript,
    }


#: Issue 12 item 5: the answer at accept time when a connection limit is reached (RFC 5804 §1.3).
REFUSALS = {r: response(Kind.BYE, Code.TRYLATER, "Too many connections") for r in Refusal}


class Server:
    """The ManageSieve listeners of one node on the connection runtime."""

    def __init__(self, svc: Services, gate: ConnectionGate | None = None) -> None:
        self.svc = svc
        self.gate = gate or ConnectionGate(policy_from_config(svc.cfg))
        self.checker: ScriptChecker = SieveChecker(sieve_limits(svc.cfg.sieve))

    def limits(self) -> Limits:
        return limits_for(self.svc)

    async def listen(self, name: str, host: str, port: int) -> asyncio.base_events.Server:
        svc = self.svc

        async def session(conn: Connection) -> None:
            if await svc.auth.bans.is_banned(conn.peer_ip):  # issue 12 item 7: refused at connect
                conn.write(response(Kind.BYE, text="Access denied: too many failed logins"))
                await conn.close()
                return
            await SieveSession(svc, self.checker, conn).run()

        return await start_listener(
            host,
            port,
            session,
            limits=self.limits,
            ssl_ctx=svc.tls if Listener(name).implicit_tls else None,
            track=svc.track,
            gate=self.gate,
            service=name,
            refusals=REFUSALS,
        )


__all__ = ["ALLOWED", "Server", "SieveSession", "State"]
