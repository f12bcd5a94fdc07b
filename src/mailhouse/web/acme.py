"""ACME HTTP-01 challenge responses (RFC 8555 §8.3): `GET /.well-known/acme-challenge/TOKEN`.

The key authorization comes from the store (published there by `certs.acme`), so whichever node
the ACME server reaches answers. Served over plain HTTP (web/redirect.py leaves the path alone,
§8.3: the server validates on port 80) as `application/octet-stream`; unknown tokens get 404.
"""

from __future__ import annotations

import re
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.certs import HTTP01_PREFIX
from mailhouse.web.common import state

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # §8.1: base64url, no padding


async def challenge(request: Request) -> Response:
    token = request.path_params["token"]
    mark = None
    if _TOKEN.fullmatch(token):
        mark = await state(request).svc.store.get_mark(HTTP01_PREFIX + token, time.time())
    if mark is None:
        raise HTTPException(404, "no such challenge")
    return Response(mark.value, media_type="application/octet-stream")  # §8.3: the key authorization
