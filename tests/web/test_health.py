"""/healthz and /readyz (web/health.py) on a real Mailhouse: readiness follows the store —
not ready while PostgreSQL is down, ready again once it is back — and the queue runner."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.cluster.test_store_outage import pg
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.postgres import PostgresInstance
from tests.web.conftest import base_url

__all__ = ["pg"]


def _wait_status(url: str, want: int, timeout: float = 60.0) -> httpx.Response:
    end = time.monotonic() + timeout
    while True:
        r = httpx.get(url, timeout=10)
        if r.status_code == want or time.monotonic() > end:
            return r
        time.sleep(0.5)


def test_health_and_readiness_follow_the_store(pg: PostgresInstance, tmp_path: Path) -> None:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", store_url=pg.url, services=("smtp", "http"))
    mh.start()
    try:
        url = base_url(mh)
        assert httpx.get(url + "/healthz", timeout=10).text == "ok\n"
        r = _wait_status(url + "/readyz", 200)
        assert r.status_code == 200 and r.json()["checks"] == {"store": True, "serving": True, "queue": True}
        pg.stop(cleanup=False)
        r = _wait_status(url + "/readyz", 503)
        assert r.status_code == 503 and r.json()["checks"]["store"] is False, r.text
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200  # alive all the same
        pg.start()
        r = _wait_status(url + "/readyz", 200)
        assert r.status_code == 200, r.text
    finally:
        mh.stop()
