"""Prometheus metrics of this process (issue 16 §6), with `prometheus_client`.

Counters and histograms are defined here, once, and incremented where the event happens; the
web face serves them at `/metrics` (web/metrics.py) together with values read at scrape time
(queue size and age, nodes serving, `mailhouse_node_info` naming the node). With `[server] workers > 1` the serve command runs in prometheus_client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` under `data_dir`, set before this module is
imported: cli/main.py re-executes itself once), so a scrape of any worker sums all of them.

Labels stay bounded: services, result and reason classes, IMAP command names from the command
table, DNS record types; never an address or a free text.

Plumbing: imports nothing of ours, so every layer may count.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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

MESSAGES = Counter(
    "mailhouse_messages_total",
    "Messages at the end of SMTP DATA/BDAT by service (listener mode), result (accepted, "
    "tempfail: 4xx, refused: 5xx) and reason class (ok, spam, dmarc, quota, size, storage, other)",
    ["service", "result", "reason"],
)
DELIVERIES = Counter(
    "mailhouse_deliveries_total",
    "Queue delivery attempts per recipient by result (delivered, deferred, bounced) and "
    "destination class (local, remote: MX, route: [routes]/relayhost)",
    ["result", "destination"],
)
SPAM_VERDICTS = Counter("mailhouse_spam_verdicts_total", "Spam verdicts (ham, junk, reject)", ["verdict"])
BANS = Counter(
    "mailhouse_bans_total", "Bans set, by source: auto (failed logins) or manual (mailhouse ban)", ["source"]
)
COMMAND_SECONDS = Histogram(
    "mailhouse_command_seconds",
    "Command latency by service (imap, pop3, smtp) and command (IMAP: the command table's names)",
    ["service", "command"],
)
DNS_SECONDS = Histogram("mailhouse_dns_lookup_seconds", "DNS look-up latency by record type", ["rdtype"])
STORE_SECONDS = Histogram(
    "mailhouse_store_transaction_seconds",
    "Store transaction latency by backend (sqlite, postgres) and kind (read, write)",
    ["backend", "kind"],
)


@contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    """Observe the time the block took (raising or not) in HISTOGRAM under LABELS."""
    start = time.perf_counter()
    try:
        yield
    finally:
        observe_since(histogram, start, *labels)


def observe_since(histogram: Histogram, start: float, *labels: str) -> None:
    """Observe the time since START (a `time.perf_counter()` reading) in HISTOGRAM under LABELS."""
    histogram.labels(*labels).observe(time.perf_counter() - start)


def exposition() -> bytes:
    """The text exposition of this process, or of every worker in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)
