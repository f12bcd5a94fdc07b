"""Drive a SASL exchange (proto.sasl mechanisms) for any protocol adapter.

The adapter supplies how to send a challenge and read a response line (SMTP `334`,
IMAP/POP3 `+`); this runs the mechanism, checks credentials against the store behind the
shared login throttle (`accounts.throttle`: per-IP serialisation, penalties, bans), and
returns the account or None. `SaslError`/`SaslCancelled` propagate so the adapter answers
with its protocol's syntax error or cancel reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mailhouse.accounts.auth import Authenticator
from mailhouse.proto import sasl
from mailhouse.store.api import Account

MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")


async def authenticate(
    auth: Authenticator,
    mechanism: str,
    initial: bytes | None,
    send_challenge: Callable[[bytes], Awaitable[None]],
    read_response: Callable[[], Awaitable[bytes]],
    ip: str,
    service: str = "other",
) -> Account | None:
    mech = sasl.create_mechanism(mechanism)
    if mech is None:
        raise LookupError(mechanism)
    step = mech.start(sasl.decode_initial(initial))
    while True:
        if isinstance(step, sasl.Challenge):
            await send_challenge(sasl.encode_challenge(step.data))
            step = mech.respond(sasl.decode_line(await read_response()))
        elif isinstance(step, sasl.Credentials):
            if step.authzid and step.authzid.lower() != step.authcid.lower():
                async with auth.limiter.attempt(ip, step.authcid, service) as att:
                    await att.failed(att.refused or "authzid")
                return None  # RFC 4616 §2: acting as another user is not allowed here
            return await auth.check(step.authcid, step.password.decode("utf-8", "replace"), ip, service)
        elif isinstance(step, sasl.NeedsVerifier):
            # SCRAM (RFC 5802 §5): the gate is held until the client's proof is judged
            return await _scram(auth, mech, step, send_challenge, read_response, ip, service)
        else:  # Rejected before any user name was known (bad first message)
            return None


async def _scram(
    auth: Authenticator,
    mech: sasl.Mechanism,
    step: sasl.NeedsVerifier,
    send_challenge: Callable[[bytes], Awaitable[None]],
    read_response: Callable[[], Awaitable[bytes]],
    ip: str,
    service: str,
) -> Account | None:
    assert isinstance(mech, sasl.ScramSha256Mechanism)  # the one mechanism that asks for keys
    async with auth.limiter.attempt(ip, step.authcid, service) as att:
        if att.refused:
            await att.failed(att.refused)
            return None
        account = await auth.store.get_account(step.authcid.lower())
        keys = account.scram if account else None
        verifier = (
            sasl.ScramVerifier(keys.salt, keys.iterations, keys.stored_key, keys.server_key) if keys else None
        )
        nxt = mech.provide_verifier(verifier)
        while True:
            if isinstance(nxt, sasl.Challenge):
                await send_challenge(sasl.encode_challenge(nxt.data))
                nxt = mech.respond(sasl.decode_line(await read_response()))
            elif isinstance(nxt, sasl.Authenticated) and account is not None:
                await att.succeeded()
                return account
            else:  # Rejected (wrong proof, unknown user) or anything unexpected
                await att.failed("password" if account is not None else "unknown-user")
                return None
