"""The services one Mailhouse process shares between its listeners.

Built once per process by `app.serve` (or by tests), handed to every protocol adapter:
configuration, the store, recipient resolution, authentication, TLS contexts, local
delivery and the outbound queue. Adapters never construct these themselves.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

from mailhouse.accounts.auth import Authenticator
from mailhouse.accounts.resolve import Resolver
from mailhouse.config import Config
from mailhouse.store.api import Store


@dataclass
class Services:
    cfg: Config
    store: Store
    resolver: Resolver
    auth: Authenticator
    tls: ssl.SSLContext
    delivery: Any = None  # mailhouse.delivery.local.LocalDelivery
    outbound: Any = None  # mailhouse.queue.runner.QueueRunner (outbound MTA), when built
    sessions: set[asyncio.Task[Any]] = field(default_factory=set)
    draining: bool = False

    def track(self, task: asyncio.Task[Any]) -> None:
        self.sessions.add(task)
        task.add_done_callback(self.sessions.discard)


async def build(cfg: Config) -> Services:
    from mailhouse import tls as tls_mod
    from mailhouse.delivery.local import LocalDelivery
    from mailhouse.store import open_store

    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    if cfg.tls_cert and cfg.tls_key:
        cert, key = cfg.tls_cert, cfg.tls_key
    else:
        cert, key = tls_mod.ensure_self_signed(cfg.data_dir, cfg.hostname)
    store = open_store(cfg.store, cfg.data_dir)
    await store.open()
    resolver = Resolver(store)
    svc = Services(cfg, store, resolver, Authenticator(store, cache_ttl=cfg.auth_cache_ttl), tls_mod.server_context(cert, key))
    svc.delivery = LocalDelivery(svc)
    try:
        from mailhouse.queue.runner import QueueRunner  # the outbound MTA, when present
    except ModuleNotFoundError:
        pass
    else:
        svc.outbound = QueueRunner(svc)
    return svc
