"""Prometheus metrics of this process (issue 16 §6), with `prometheus_client`.

Counters and histograms are defined here, once, and incremented where the event happens; the
web face serves them at `/metrics` (web/metrics.py) together with values read at scrape time
(queue size and age, nodes serving, `mailhouse_node_info` naming the node). With `[server] workers > 1` the serve command runs in prometheus_client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` under `data_dir`, set before this module is
imported: cli/main.py re-executes itself once), so a scrape of any worker sums all of them.

Plumbing: imports nothing of ours, so every layer may count.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

AUTH_FAILURES = Counter(
    "mailhouse_auth_failures_total",
    "Failed logins by service and reason (password, unknown-user, banned, throttled…)",
    ["service", "reason"],
)
CONNECTIONS = Counter(
    "mailhouse_connections_total",
    "Connections by service ([listen] key) and result: accepted, or refused (busy, per-ip)",
    ["service", "result"],
)
CONNECTIONS_OPEN = Gauge(
    "mailhouse_connections_open", "Connections held now (all services)", multiprocess_mode="livesum"
)


def exposition() -> bytes:
    """The text exposition of this process, or of every worker in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)
