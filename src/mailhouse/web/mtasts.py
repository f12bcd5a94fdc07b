"""The MTA-STS policy Mailhouse publishes (RFC 8461 §3.3): `GET /.well-known/mta-sts.txt` on the
`mta-sts.DOMAIN` host of every hosted domain, as `text/plain`.

The policy (`[mta_sts] publish` mode, this host as the one MX, `publish_max_age`) comes from
`mailauth/dnsrecords.published_policy`, whose id `mailhouse dns` prints, so the served policy and
the advised TXT record never disagree. Senders fetch it over HTTPS only (§3.3): the web face must
be reached on port 443 with a certificate for `mta-sts.DOMAIN` (a TLS proxy in front, or the
web listener's own TLS). Other hosts, unknown domains and `publish = "off"` get 404.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.mailauth.dnsrecords import published_policy
from mailhouse.web.common import state

PREFIX = "mta-sts."


async def policy(request: Request) -> Response:
    svc = state(request).svc
    host = request.headers.get("host", "").rsplit(":", 1)[0].lower().rstrip(".")
    domain = host[len(PREFIX) :] if host.startswith(PREFIX) else ""
    text = published_policy(svc.cfg)
    if text is None or not domain or await svc.store.get_domain(domain) is None:
        raise HTTPException(404, "no MTA-STS policy here")
    # §3.3: text/plain; a short cache lifetime, since the TXT id announces changes anyway
    return Response(text, media_type="text/plain", headers={"Cache-Control": "max-age=300"})
