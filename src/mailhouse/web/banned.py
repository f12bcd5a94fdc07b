"""Banned clients get 403 before anything else runs (issue 12 item 7).

`BannedClients` is a pure ASGI middleware in front of the app: an HTTP request from an address
that `accounts.bans.Bans.is_banned` reports (too many failed logins, or `mailhouse ban add`)
is answered ``403 Forbidden`` with ``Connection: close`` without reading its body. The
address is the ASGI client, i.e. the one uvicorn's proxy-headers handling settled on
(``[web] forwarded_allow_ips``), the same one the login throttle counts.
"""

from __future__ import annotations

from mailhouse.accounts.bans import Bans
from mailhouse.web.limits import ASGIApp, Receive, Scope, Send

BODY = b"Access denied: too many failed logins.\n"


class BannedClients:
    def __init__(self, app: ASGIApp, bans: Bans) -> None:
        self.app = app
        self.bans = bans

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and await self.bans.is_banned(str(client[0])):
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(BODY)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BODY})
            return
        await self.app(scope, receive, send)
