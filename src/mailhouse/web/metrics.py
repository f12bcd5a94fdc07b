"""`GET /metrics`: Prometheus text exposition (issue 16 §6).

Answered only to clients in `[metrics] allow_ips` (default: loopback) or presenting
`Authorization: Bearer <[metrics] token>` (compared in constant time); everyone else gets 403.
The body is the process's counters (mailhouse/metrics.py; every worker's in multiprocess mode)
plus values read at scrape time: `mailhouse_queue_messages`, `mailhouse_queue_oldest_seconds`,
`mailhouse_nodes` (heartbeats in the store) and `mailhouse_node_info{node,version}`.
"""

from __future__ import annotations

import hmac
import time

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailhouse import __version__, metrics
from mailhouse.config import address_in, parse_networks
from mailhouse.runtime.beacon import live_nodes
from mailhouse.web.common import client_ip, state


def _allowed(request: Request) -> bool:
    cfg = state(request).svc.cfg
    token = cfg.metrics_token
    given = request.headers.get("authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    return address_in(client_ip(request), parse_networks(tuple(cfg.metrics_allow_ips)))


async def metrics_page(request: Request) -> Response:
    if not _allowed(request):
        return PlainTextResponse(
            "403 forbidden: /metrics is for [metrics] allow_ips or token\n", status_code=403
        )
    svc = state(request).svc
    now = time.time()
    reg = CollectorRegistry()
    queued, oldest = await svc.store.queue_size()
    Gauge("mailhouse_queue_messages", "Messages in the outbound queue", registry=reg).set(queued)
    Gauge("mailhouse_queue_oldest_seconds", "Age of the oldest queued message", registry=reg).set(
        now - (oldest if oldest is not None else now)
    )
    Gauge("mailhouse_nodes", "Nodes whose heartbeat is in the store", registry=reg).set(
        len(await live_nodes(svc.store, now))
    )
    Gauge("mailhouse_node_info", "This node", ["node", "version"], registry=reg).labels(
        svc.cfg.hostname, __version__
    ).set(1)
    body = metrics.exposition() + generate_latest(reg)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
