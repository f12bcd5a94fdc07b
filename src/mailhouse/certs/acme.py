"""Certificates from an ACME server (RFC 8555), HTTP-01 or TLS-ALPN-01 (RFC 8737), kept in the store.

`AcmeManager.ensure()` is one pass: the certificate in the store (mark `acme:certificate`) is
installed into the files `[tls]` names (data_dir/tls by default) and the running context reloaded
when it differs; it is ordered anew when there is none, it lacks a wanted name, or two thirds of
its lifetime have passed. `run()` repeats that pass: at the renewal time plus jitter, at least
hourly (to pick up another node's renewal), and after a failure with growing back-off.

Invariants:
- the account key (mark `acme:account`), the certificate with its key and the HTTP-01 key
  authorizations (marks `acme:http01:TOKEN`, RFC 8555 §8.3) live in the store, so every node
  answers every challenge and serves the same certificate;
- the TLS-ALPN-01 validation certificates (marks `acme:tlsalpn01:NAME`, certs/tlsalpn.py) live
  there too; every HTTPS listener picks them up within `web.acme.VALIDATION_POLL` seconds, so the
  CA is told to validate only `PROPAGATION` seconds after they are published;
- only one node orders: the first to count the event `acme:order` within `LEASE_SECONDS` (one
  transaction on the shared store) holds the lease; the others wait for its certificate. The
  holder counts another event every `HEARTBEAT` seconds while its order runs (a slow CA, many
  names: the lease never lapses under a live order) and clears them when done, ordered or failed;
  a holder that dies stops beating, and its lease ends `LEASE_SECONDS` after the last beat;
- each order gets a fresh certificate key (never the account key, RFC 8555 §11.1);
- the blocking `acme` library calls run in threads (`asyncio.to_thread`), never on the loop.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acme import challenges, client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256, RS256
from josepy.jwk import JWK, JWKEC

from mailhouse import tls as tls_mod
from mailhouse.certs import HTTP01, HTTP01_PREFIX, TLSALPN01, TLSALPN01_PREFIX, challenge_type, tlsalpn
from mailhouse.config import Config, Listener
from mailhouse.store.api import Store

log = logging.getLogger(__name__)

ACCOUNT_MARK = "acme:account"
CERT_MARK = "acme:certificate"
TOKEN_PREFIX = HTTP01_PREFIX
LEASE_KEY = "acme:order"
LEASE_SECONDS = 600.0  # the lease lapses this long after its holder's last heartbeat
HEARTBEAT = LEASE_SECONDS / 3  # seconds between renewals: two may fail before the lease lapses
PROPAGATION = 2.5  # seconds every node's HTTPS listener needs to see a validation certificate
TOKEN_SECONDS = 3600.0  # a published key authorization outlives its order
ORDER_TIMEOUT = 300.0  # seconds poll_and_finalize waits for the server
RENEW_FRACTION = 2 / 3  # renew after two thirds of the lifetime (issue 16 §2, as certbot/Let's Encrypt)
CHECK_MAX = 3600.0  # look at the store at least hourly: another node may have renewed
RETRY_BASE, RETRY_MAX = 900.0, 6 * 3600.0  # back-off after a failed order (> LEASE_SECONDS)
FOREVER = 100 * 365 * 86400.0  # marks that never expire (the account)


class Outcome(enum.Enum):
    """What one `ensure()` pass did."""

    CURRENT = "current"  # the stored certificate is valid and covers the names
    ORDERED = "ordered"  # this node ordered, stored and installed a new certificate
    WAITING = "waiting"  # a renewal is due but another node holds the order lease


class AcmeError(Exception):
    """An order did not produce a certificate (the message says why)."""


class TlsAlpn01Response(challenges.KeyAuthorizationChallengeResponse):
    """The response to a tls-alpn-01 challenge (`{}`, RFC 8555 §7.5.1); the library has none."""

    typ = TLSALPN01


class TlsAlpn01(challenges.KeyAuthorizationChallenge):
    """RFC 8737 §3: the key authorization goes into a validation certificate (certs/tlsalpn.py)."""

    response_cls = TlsAlpn01Response
    typ = TLSALPN01

    def validation(self, account_key: JWK, **unused: Any) -> str:
        return self.key_authorization(account_key)


challenges.ChallengeResponse.TYPES.setdefault(TLSALPN01, TlsAlpn01Response)
challenges.Challenge.TYPES.setdefault(TLSALPN01, TlsAlpn01)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate chain (PEM, leaf first) with its key and lifetime."""

    chain: str
    key: str
    not_before: float
    not_after: float
    names: tuple[str, ...]

    @property
    def renew_at(self) -> float:
        return self.not_before + RENEW_FRACTION * (self.not_after - self.not_before)

    @classmethod
    def from_pem(cls, chain: str, key: str) -> Issued:
        leaf = x509.load_pem_x509_certificate(chain.encode())
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = ()
        return cls(
            chain, key, leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp(), names
        )


async def wanted_names(cfg: Config, store: Store) -> list[str]:
    """`[acme] names`, else the host name and `mta-sts.`/`autoconfig.` of every hosted domain."""
    if cfg.acme_names:
        return list(cfg.acme_names)
    names = [cfg.hostname.lower().rstrip(".")]
    for d in await store.list_domains():
        names += [f"mta-sts.{d.name}", f"autoconfig.{d.name}"]  # RFC 8461 §3.3; Thunderbird autoconfig
    return list(dict.fromkeys(names))


class AcmeManager:
    """Obtains, renews and installs the node's certificate from `[acme] directory`."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        certificate: tls_mod.ServerCertificate,
        clock: Callable[[], float] = time.time,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.cfg, self.store, self.certificate = cfg, store, certificate
        self.clock, self.heartbeat = clock, heartbeat
        self.challenge = challenge_type(cfg)
        self.verify: bool | str = str(cfg.acme_ca_file) if cfg.acme_ca_file else True
        self._failures = 0
        self._next = 0.0
        self._retry_at = 0.0  # after a failed order: no new one before this

    # ------------------------------------------------------------------ the pass
    async def ensure(self) -> Outcome:
        names = await wanted_names(self.cfg, self.store)
        now = self.clock()
        stored = await self._stored(now)
        if stored is not None and set(names) <= set(stored.names) and now < stored.renew_at:
            self._install(stored)
            if self._next != stored.renew_at:  # said once per certificate, not at every hourly check
                log.info(
                    "ACME: certificate for %s valid until %s, renewal due %s",
                    ", ".join(stored.names),
                    _utc(stored.not_after),
                    _utc(stored.renew_at),
                )
            self._next = stored.renew_at
            return Outcome.CURRENT
        # RFC 8555 does not coordinate clients: the store does (one counted event per window)
        if now < self._retry_at or await self.store.count_event(LEASE_KEY, now, LEASE_SECONDS) > 1:
            if stored is not None:
                self._install(stored)
            self._next = max(self._retry_at, now + LEASE_SECONDS)
            return Outcome.WAITING
        beat = asyncio.ensure_future(self._beat())
        try:
            issued = await self._order(names)
            await self.store.set_mark(
                CERT_MARK, json.dumps({"chain": issued.chain, "key": issued.key}), issued.not_after
            )
        finally:
            beat.cancel()
            await self.store.clear_events(LEASE_KEY)  # released: done (the certificate is stored) or failed
        self._install(issued)
        self._next = issued.renew_at
        log.info("ACME: certificate for %s issued, valid until %s", ", ".join(names), _utc(issued.not_after))
        return Outcome.ORDERED

    async def _beat(self) -> None:
        """Renew the lease while this node's order runs (module docstring)."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.store.count_event(LEASE_KEY, self.clock(), LEASE_SECONDS)
            except Exception as e:  # the next beat may succeed; two may fail before the lease lapses
                log.warning("ACME: could not renew the order lease: %s", e)

    async def run(self) -> None:
        """`step()` forever, looking at the store at least hourly."""
        if self.challenge == HTTP01 and Listener.HTTP not in self.cfg.listen:
            log.warning("ACME: [listen] http is not set: HTTP-01 challenges (port 80) cannot be answered")
        if self.challenge == TLSALPN01 and Listener.HTTPS not in self.cfg.listen:
            log.warning(
                "ACME: [listen] https is not set: TLS-ALPN-01 challenges (port 443) cannot be answered"
            )
        while True:
            await asyncio.sleep(min(await self.step(), CHECK_MAX))

    async def step(self) -> float:
        """One `ensure()`; the seconds until the next: the renewal time plus jitter, or after a
        failure the back-off (no new order before it, RETRY_BASE doubling up to RETRY_MAX)."""
        try:
            await self.ensure()
            self._failures = 0
            return max(0.0, self._next - self.clock()) + random.uniform(0, 0.02 * CHECK_MAX)
        except Exception as e:  # an ACME or network failure must not stop the node
            self._failures += 1
            delay = min(RETRY_MAX, RETRY_BASE * 2.0 ** (self._failures - 1)) * random.uniform(1.0, 1.25)
            self._retry_at = self.clock() + delay
            log.error("ACME: no certificate yet (%s); next order in %.0f s", e, delay)
            return delay

    # ------------------------------------------------------------------ store and files
    async def _stored(self, now: float) -> Issued | None:
        mark = await self.store.get_mark(CERT_MARK, now)
        if mark is None:
            return None
        data = json.loads(mark.value)
        return Issued.from_pem(data["chain"], data["key"])

    def _install(self, issued: Issued) -> None:
        """Write ISSUED where `[tls]` reads the certificate and reload the running context."""
        cert_p, key_p = self.certificate.cert, self.certificate.key
        try:
            if cert_p.read_text() == issued.chain and key_p.read_text() == issued.key:
                return
        except OSError:
            pass
        cert_p.parent.mkdir(parents=True, exist_ok=True)
        _write(key_p, issued.key, 0o600)
        _write(cert_p, issued.chain, 0o644)
        self.certificate.reload()  # issue 16 §3: new handshakes get it, open connections keep theirs
        log.info("ACME: certificate installed in %s", cert_p)

    async def _account(self) -> tuple[JWK, str | None]:
        mark = await self.store.get_mark(ACCOUNT_MARK, self.clock())
        if mark is not None:
            data = json.loads(mark.value)
            return JWK.json_loads(data["key"]), data.get("uri")
        key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        return key, None

    # ------------------------------------------------------------------ the order (RFC 8555 §7.4)
    async def _order(self, names: list[str]) -> Issued:
        jwk, uri = await self._account()
        acme = await asyncio.to_thread(self._client, jwk, uri)
        if uri is None:
            # RFC 8555 §7.3: contact is optional; an empty mailto: is refused
            reg = messages.NewRegistration.from_data(
                email=self.cfg.acme_email or None, terms_of_service_agreed=True
            )
            regr = await asyncio.to_thread(acme.new_account, reg)  # RFC 8555 §7.3
            acme.net.account = regr
            await self.store.set_mark(
                ACCOUNT_MARK, json.dumps({"key": jwk.json_dumps(), "uri": regr.uri}), self.clock() + FOREVER
            )
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        csr = crypto_util.make_csr(key_pem, names)
        log.info("ACME: ordering a certificate for %s (%s challenges)", ", ".join(names), self.challenge)
        order = await asyncio.to_thread(acme.new_order, csr)
        published: list[str] = []
        try:
            pending: list[tuple[messages.ChallengeBody, challenges.ChallengeResponse]] = []
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                challb = _challenge(authz, self.challenge)
                response, validation = challb.response_and_validation(jwk)
                published.append(await self._publish(challb, authz.body.identifier.value, validation))
                pending.append((challb, response))
            if self.challenge == TLSALPN01 and pending:
                await asyncio.sleep(PROPAGATION)  # every node's HTTPS listener serves them by now
            for challb, response in pending:
                await asyncio.to_thread(acme.answer_challenge, challb, response)  # RFC 8555 §7.5.1
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
            done = await asyncio.to_thread(acme.poll_and_finalize, order, deadline)
        except Exception as e:
            raise AcmeError(f"order for {', '.join(names)} at {self.cfg.acme_directory} failed: {e}") from e
        finally:
            for token in published:
                await self.store.remove_mark(token)
        return Issued.from_pem(done.fullchain_pem, key_pem.decode())

    async def _publish(self, challb: messages.ChallengeBody, name: str, key_authorization: str) -> str:
        """Put what answers CHALLB for NAME into the store; the mark's key (withdrawn after the order)."""
        expires = self.clock() + TOKEN_SECONDS
        if self.challenge == HTTP01:
            mark: str = TOKEN_PREFIX + challb.chall.encode("token")
            await self.store.set_mark(mark, key_authorization, expires)  # RFC 8555 §8.3
            return mark
        cert, key = tlsalpn.validation_certificate(name, key_authorization)  # RFC 8737 §3
        mark = TLSALPN01_PREFIX + name.lower()
        await self.store.set_mark(mark, json.dumps({"cert": cert, "key": key}), expires)
        return mark

    def _client(self, jwk: JWK, uri: str | None) -> client.ClientV2:
        alg = ES256 if isinstance(jwk, JWKEC) else RS256
        # `verify_ssl` is handed to requests' `verify=`: a CA bundle path trusts a private server
        verify: Any = self.verify
        net = client.ClientNetwork(jwk, alg=alg, verify_ssl=verify, user_agent="mailhouse")
        if uri is not None:
            net.account = messages.RegistrationResource(body=messages.Registration(), uri=uri)
        return client.ClientV2(client.ClientV2.get_directory(self.cfg.acme_directory, net), net)


def _challenge(authz: messages.AuthorizationResource, typ: str) -> messages.ChallengeBody:
    for challb in authz.body.challenges:
        offered: object = getattr(challb.chall, "typ", None)  # None: a type the library does not know
        if offered == typ:
            return challb
    raise AcmeError(f"the server offers no {typ} challenge for {authz.body.identifier.value}")


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".acme")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
