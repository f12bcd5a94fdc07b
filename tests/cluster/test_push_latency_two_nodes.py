"""Push latency across two PostgreSQL nodes (issue 13 §2): from the ``250`` of an SMTP delivery on
node B to ``* n EXISTS`` on an IDLE session of node A (LISTEN/NOTIFY through the change feed).

Before issue 13 an IDLE session only noticed a wake-up at its 0.5 s input poll (≈ 450 ms p50);
the goal is p50 < 150 ms. The bound here is generous (p50 < 250 ms) so that a loaded machine
does not fail it, yet the old behaviour does; the precise figure comes from
``python -m bench.imap.push --nodes 2``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.imap.push import measure, pct

from tests.cluster.test_two_nodes import USER, Cluster

SAMPLES = 12
P50_BOUND = 0.250  # seconds; the goal is 0.150, the old code measured ≈ 0.45-0.5


@pytest.fixture
def cluster(postgres_db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, postgres_db_url).start()
    try:
        yield c
    finally:
        c.stop()


def test_idle_on_a_hears_smtp_delivery_on_b_within_bound(cluster: Cluster) -> None:
    lat = measure(cluster.a.addr("imaps"), cluster.b.addr("smtp"), SAMPLES, tls=True, user=USER)
    assert len(lat) == SAMPLES
    assert pct(lat, 0.5) < P50_BOUND, [round(x * 1000, 1) for x in lat]
