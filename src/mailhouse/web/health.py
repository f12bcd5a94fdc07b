"""Health endpoints for load balancers and service managers (issue 16 §6).

- `GET /healthz`: the process serves HTTP (liveness) — 200 `ok`.
- `GET /readyz`: this node can take traffic — 200 when the store answers a read within
  `STORE_TIMEOUT`, the node is not draining (SIGTERM received) and the queue runner's loop is
  alive; 503 otherwise. The body is JSON naming each check, so an operator sees which one failed.
Neither needs a login nor reveals more than these three booleans.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from mailhouse.web.common import state

STORE_TIMEOUT = 2.0  # seconds a store read may take before the node is not ready


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n", headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    svc = state(request).svc
    started = time.monotonic()
    try:
        await asyncio.wait_for(svc.store.get_domain("readyz.invalid"), STORE_TIMEOUT)
        store_ok = True
    except Exception:  # noqa: BLE001 - any failure to read means "not ready"; the reason is logged by the store
        store_ok = False
    checks = {
        "store": store_ok,
        "serving": not svc.draining,
        "queue": svc.outbound.alive,
    }
    ready = all(checks.values())
    body = {"ready": ready, "checks": checks, "store_ms": round((time.monotonic() - started) * 1000, 1)}
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})
