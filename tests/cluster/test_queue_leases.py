"""Queue leases across a SIGKILL (issue 12 item 10), with real `mailhouse serve` processes on one
PostgreSQL database: two nodes, node B accepts mail for a next hop that hangs (accepts TCP and
never greets), so every message is in flight and leased to B when B is killed with SIGKILL. The
next hop then recovers and B is restarted: B releases its previous incarnation's leases at
start-up and every acknowledged message is relayed within seconds (not after the lease expires:
15 minutes before this change), each exactly once (none reached the next hop before the kill).
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_two_nodes import _sink_ids, _with_store
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

pytestmark = pytest.mark.slow

HOSTS = ("127.0.0.2", "127.0.0.3")
NEXT_HOP = "127.0.0.4"
USER = "alice@example.org"
N = 8
RESTART_BUDGET = 20.0  # well inside the new 60 s lease: only the start-up release can meet it


def _submit(node: MailhouseProcess, test_id: str) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(*node.addr("submission"), timeout=15) as c:
        c.starttls(context=ctx)
        c.login(USER, PASSWORD)
        c.sendmail(
            USER,
            ["r@remote.test"],
            f"From: {USER}\r\nX-Test-Id: {test_id}\r\nSubject: {test_id}\r\n\r\nout\r\n".encode(),
        )


@pytest.mark.parametrize("workers", [1, 2])
def test_kill9_with_deliveries_in_flight_restarted_node_delivers_at_once(
    postgres_db_url: str, tmp_path: Path, smtp_sink_factory: Any, workers: int
) -> None:
    hole = socket.socket()  # the hung next hop: connections wait in the backlog, never greeted
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind((NEXT_HOP, 0))
    hole.listen(64)
    port = hole.getsockname()[1]
    extra = (
        f'relayhost = {{ host = "{NEXT_HOP}", port = {port}, tls = "none" }}\n[server]\nworkers = {workers}'
    )
    nodes = []
    for i, host in enumerate(HOSTS):
        d = tmp_path / f"node{i}"
        d.mkdir()
        nodes.append(
            MailhouseProcess(d, host=host, store_url=postgres_db_url, extra=extra, services=("submission",))
        )
    a, b = nodes
    a.add_domain("example.org")
    a.add_user(USER)
    try:
        for n in nodes:
            n.start()
        acked = []
        for i in range(N):
            _submit(b, f"L{i:03d}")
            acked.append(f"L{i:03d}")

        def queued() -> list[Any]:
            return asyncio.run(_with_store(postgres_db_url, tmp_path / "q", lambda s: s.list()))  # type: ignore[no-any-return]

        rows = queued()
        assert len(rows) == N and all(r.lease_owner and r.lease_until > time.time() for r in rows)
        owners_before = {r.lease_owner for r in rows}
        time.sleep(1.0)  # the passes are connected to the hung next hop
        b.kill9()
        hole.close()
        sink = smtp_sink_factory(host=NEXT_HOP, port=port, dump_dir=tmp_path / "sink")
        time.sleep(1.0)
        assert sum(_sink_ids(sink).values()) == 0  # node A does not take B's live-looking leases
        restarted = time.time()
        b.start()
        while time.time() < restarted + RESTART_BUDGET and set(_sink_ids(sink)) != set(acked):
            time.sleep(0.2)
        took = time.time() - restarted
        ids = _sink_ids(sink)
        assert set(ids) == set(acked), (
            f"{len(set(acked) - set(ids))}/{N} acknowledged messages not relayed {took:.0f}s after the "
            f"restart; still leased to {sorted({r.lease_owner for r in queued()})} (before: {owners_before})"
        )
        time.sleep(2.0)  # a duplicate pass would show up now
        ids = _sink_ids(sink)
        assert max(ids.values()) == 1, [k for k, v in ids.items() if v > 1]
        assert queued() == []
        assert "entries leased by earlier incarnations" in b.logtext()
    finally:
        hole.close()
        for n in nodes:
            n.stop()
