"""ACME challenge answers from the store: HTTP-01 and TLS-ALPN-01.

HTTP-01 (RFC 8555 §8.3): `GET /.well-known/acme-challenge/TOKEN`. The key authorization comes
from the store (published there by `certs.acme`), so whichever node the ACME server reaches
answers. Served over plain HTTP (web/redirect.py leaves the path alone, §8.3: the server
validates on port 80) as `application/octet-stream`; unknown tokens get 404.

TLS-ALPN-01 (RFC 8737): on the `https` listener. `follow_validations` copies the validation
certificates the ordering node stored (marks `acme:tlsalpn01:NAME`) into the node's
`tls.ServerCertificate` every `VALIDATION_POLL` seconds, whose SNI callback serves them with ALPN
`acme-tls/1`; `closing_protocol` then ends such a connection right after the handshake — §3
says no application data follows.

Invariant: a validation certificate in the store reaches every HTTPS listener within
`VALIDATION_POLL` seconds (certs.acme waits `PROPAGATION` > that before asking the CA to validate).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from mailhouse import tls as tls_mod
from mailhouse.certs import HTTP01_PREFIX, TLSALPN01_PREFIX
from mailhouse.store.api import Store
from mailhouse.web.common import state

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # §8.1: base64url, no padding
VALIDATION_POLL = 1.0  # seconds between looks at the store for TLS-ALPN-01 validation certificates


async def challenge(request: Request) -> Response:
    token = request.path_params["token"]
    mark = None
    if _TOKEN.fullmatch(token):
        mark = await state(request).svc.store.get_mark(HTTP01_PREFIX + token, time.time())
    if mark is None:
        raise HTTPException(404, "no such challenge")
    return Response(mark.value, media_type="application/octet-stream")  # §8.3: the key authorization


async def refresh_validations(store: Store, certificate: tls_mod.ServerCertificate) -> int:
    """Serve exactly the validation certificates in the store now; how many there are."""
    pems: dict[str, tuple[str, str]] = {}
    for mark in await store.list_marks(TLSALPN01_PREFIX, time.time()):
        data = json.loads(mark.value)
        pems[mark.key.removeprefix(TLSALPN01_PREFIX)] = (data["cert"], data["key"])
    certificate.set_validations(pems)
    return len(pems)


async def follow_validations(store: Store, certificate: tls_mod.ServerCertificate) -> None:
    """`refresh_validations` every VALIDATION_POLL seconds, for as long as the listener runs."""
    while True:
        try:
            await refresh_validations(store, certificate)
        except Exception as e:  # a store hiccup must not end the listener's answers
            log.warning("ACME: could not read the TLS-ALPN-01 validation certificates: %s", e)
        await asyncio.sleep(VALIDATION_POLL)


def closing_protocol(base: type[H11Protocol], certificate: tls_mod.ServerCertificate) -> type[H11Protocol]:
    """BASE, but a connection whose handshake served a validation certificate (ALPN acme-tls/1,
    RFC 8737 §3) is closed at once: no HTTP is spoken on it."""

    class AcmeClosing(base):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)  # admitted as any connection: released when it is lost
            sslobj = transport.get_extra_info("ssl_object")
            if isinstance(sslobj, ssl.SSLObject) and certificate.is_validation(sslobj):
                transport.close()

    return AcmeClosing
