"""The services one Mailhouse node shares between its listeners.

Built once per node (process) by `build` — from `app.run_node`, or by tests — and handed to
every protocol adapter's `Server`: configuration, the store, recipient resolution,
authentication, the TLS context, local delivery, the outbound queue and the envelope
service (policy + MSA + accept path). Adapters never construct these themselves.

Wiring: each component is constructed here with the narrow, typed dependencies it uses
(store, resolver, config, DKIM signer, clock …); none of them receives or imports
`Services`. Process-wide state lives on these objects (the resolver's caches, the
authenticator's throttle and password cache, the MSA's loaded DKIM keys), so two nodes in
one process (tests) share nothing.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

from mailhouse import tls as tls_mod
from mailhouse.accounts.auth import Authenticator
from mailhouse.accounts.resolve import Resolver
from mailhouse.config import Config
from mailhouse.delivery.accept import EnvelopeService
from mailhouse.delivery.forward import ArcSealer
from mailhouse.delivery.local import LocalDelivery
from mailhouse.delivery.policy import EnvelopePolicy
from mailhouse.delivery.sendlimits import SendLimits
from mailhouse.delivery.sieve import SieveFilter, SieveRunner, sieve_limits
from mailhouse.delivery.srs import load_codec
from mailhouse.delivery.submission import Submission
from mailhouse.mailauth.dkim import DkimSigner
from mailhouse.message import fts_text
from mailhouse.queue.runner import QueueRunner
from mailhouse.reports.intake import ReportIntake
from mailhouse.spam.bayes import Bayes
from mailhouse.spam.learned import AccountOf, LearnedRule
from mailhouse.spam.learning import Learning
from mailhouse.spam.pipeline import SpamFilter
from mailhouse.spam.userlists import UserLists
from mailhouse.store import open_store
from mailhouse.store.api import Store


@dataclass
class Services:
    cfg: Config
    store: Store
    resolver: Resolver
    auth: Authenticator
    tls: ssl.SSLContext  # certificate.context: what every listener hands to TLS handshakes
    delivery: LocalDelivery
    outbound: QueueRunner
    envelope: EnvelopeService
    learning: Learning  # issue 14 §3: Bayes + sender lists, trained by IMAP moves and the webmail
    spam: SpamFilter | None = None  # issue 14: scoring on port 25 (None: [spam] enabled = false)
    sessions: set[asyncio.Task[Any]] = field(default_factory=set)
    draining: bool = False
    certificate: tls_mod.ServerCertificate | None = None  # reloaded on SIGHUP and when the files change

    def track(self, task: asyncio.Task[Any]) -> None:
        self.sessions.add(task)
        task.add_done_callback(self.sessions.discard)


def load_certificate(cfg: Config) -> tls_mod.ServerCertificate:
    """The node's certificate: `[tls] cert`/`key`, else a self-signed pair in the data directory."""
    if cfg.tls_cert and cfg.tls_key:
        cert, key = cfg.tls_cert, cfg.tls_key
    else:
        cert, key = tls_mod.ensure_self_signed(cfg.data_dir, cfg.hostname)
    return tls_mod.ServerCertificate(cert, key, cfg.tls_sni)


async def build(cfg: Config, certificate: tls_mod.ServerCertificate | None = None) -> Services:
    """Open the store and construct the node's components (the store is open on return).

    CERTIFICATE: one already read (by a node before it dropped root, runtime/privileges.py)."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    certificate = certificate or load_certificate(cfg)
    store = open_store(cfg.store, cfg.data_dir, indexer=fts_text.extract)  # issue 13 §4
    await store.open()
    resolver = Resolver(store)
    intake = ReportIntake(store, cfg.report_addresses, cfg.reports_folder) if cfg.reports_enabled else None
    local = LocalDelivery(store, resolver, reports=intake)
    outbound = QueueRunner(cfg, store, resolver, local)
    lists = UserLists(store)
    bayes = Bayes(
        store, enabled=cfg.spam_bayes, min_spam=cfg.spam_bayes_min_spam, min_ham=cfg.spam_bayes_min_ham
    )
    srs = (
        await load_codec(store, cfg.srs_domain, cfg.srs_max_age, cfg.srs_secret_generation)
        if cfg.srs_enabled
        else None
    )
    # issue 17: Sieve at local delivery; its redirects and vacation replies go through the queue
    local.sieve = SieveFilter(store, cfg.sieve, SieveRunner(sieve_limits(cfg.sieve)), cfg.hostname, srs=srs)
    local.sieve.outbox = outbound.enqueue
    envelope = EnvelopeService(
        EnvelopePolicy(store, resolver, local, srs),
        Submission(resolver, cfg.hostname, DkimSigner()),
        local,
        outbound,
        SendLimits(store, cfg),
        lists,
        ArcSealer(resolver, cfg.hostname),
        srs,
    )
    return Services(
        cfg=cfg,
        store=store,
        resolver=resolver,
        auth=Authenticator(
            store, cache_ttl=cfg.auth_cache_ttl, limits=cfg.auth_limits, is_trusted=cfg.is_trusted
        ),
        tls=certificate.context,
        certificate=certificate,
        delivery=local,
        outbound=outbound,
        envelope=envelope,
        learning=Learning(bayes, lists),
        # the recipients' sender lists and Bayes classifiers join the default rules (spam/learned.py)
        spam=SpamFilter(cfg, extra_rules=[LearnedRule(lists, bayes, _account_of(resolver))])
        if cfg.spam.enabled
        else None,
    )


def _account_of(resolver: Resolver) -> AccountOf:
    """A recipient address → the id of the local account it reaches first (aliases followed)."""

    async def account_of(address: str) -> int | None:
        res = await resolver.resolve(address)
        return res.local[0].id if res.local else None

    return account_of
