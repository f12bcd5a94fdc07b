"""Drive a SASL exchange (proto.sasl mechanisms) for any protocol adapter.

The adapter supplies how to send a challenge and read a response line (SMTP `334`,
IMAP/POP3 `+`); this runs the mechanism, checks credentials against the store with the
shared per-IP throttle, and returns the account or None. `SaslError`/`SaslCancelled`
propagate so the adapter answers with its protocol's syntax error or cancel reply.
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
) -> Account | None:
    mech = sasl.create_mechanism(mechanism)
    if mech is None:
        raise LookupError(mechanism)
    step = mech.start(sasl.decode_initial(initial))
    account: Account | None = None
    while True:
        if isinstance(step, sasl.Challenge):
            await send_challenge(sasl.encode_challenge(step.data))
            step = mech.respond(sasl.decode_line(await read_response()))
        elif isinstance(step, sasl.Credentials):
            if step.authzid and step.authzid.lower() != step.authcid.lower():
                auth.limiter.failed(ip)
                return None  # RFC 4616 §2: acting as another user is not allowed here
            return await auth.check(step.authcid, step.password.decode("utf-8", "replace"), ip)
        elif isinstance(step, sasl.NeedsVerifier):
            await auth.limiter.wait(ip)
            account = await auth.store.get_account(step.authcid.lower())
            keys = account.scram if account else None
            verifier = (
                sasl.ScramVerifier(keys.salt, keys.iterations, keys.stored_key, keys.server_key)
                if keys
                else None
            )
            assert isinstance(mech, sasl.ScramSha256Mechanism)  # the one mechanism that asks for keys
            step = mech.provide_verifier(verifier)
        elif isinstance(step, sasl.Authenticated):
            if account is not None:
                auth.limiter.succeeded(ip)
            return account
        else:  # Rejected
            auth.limiter.failed(ip)
            return None
