"""Plain HTTP redirects to HTTPS once the node serves `[listen] https` (issue 16 §4).

A request that arrived over plain HTTP (`scope["scheme"] == "http"`: neither our TLS nor a
`[web] forwarded_allow_ips` proxy saying `X-Forwarded-Proto: https`) gets `308 Permanent
Redirect` (RFC 9110 §15.4.9: method and body kept) to the same path on the HTTPS listener,
except where a standard expects plain HTTP or a client may not follow: ACME HTTP-01
challenges (RFC 8555 §8.3), Thunderbird's autoconfig and Outlook's Autodiscover, the MTA-STS
policy path, and the health and metrics endpoints that monitors poll on a fixed URL.
The Location host is the request's Host (its name, never its port) when it is a plain host
name, else the configured `hostname`: nothing the client sent is echoed unchecked.
"""

from __future__ import annotations

import re
from typing import Any

PLAIN_PATHS = (
    "/.well-known/acme-challenge/",
    "/.well-known/autoconfig/",
    "/.well-known/mta-sts.txt",
    "/mail/config-v1.1.xml",
    "/autodiscover/",
    "/Autodiscover/",
    "/healthz",
    "/readyz",
    "/metrics",
)
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}")


class HttpsRedirect:
    """Pure ASGI middleware in front of the app: plain-HTTP requests go to HTTPS_PORT."""

    def __init__(self, app: Any, https_port: int, hostname: str) -> None:
        self.app = app
        self.port = https_port
        self.hostname = hostname

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "http" or scope["path"].startswith(PLAIN_PATHS):
            await self.app(scope, receive, send)
            return
        host = ""
        for k, v in scope.get("headers", []):
            if k == b"host":
                host = v.decode("latin-1").rsplit(":", 1)[0] if not v.startswith(b"[") else ""
                break
        if not _HOST.fullmatch(host):
            host = self.hostname
        port = "" if self.port == 443 else f":{self.port}"
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        location = f"https://{host}{port}{path}" + (f"?{query}" if query else "")
        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
