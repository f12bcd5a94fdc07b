"""Certificates the node obtains for itself (issue 16 §2): the ACME client in `certs.acme`.

A service used by `app.py` (never imported by the protocol adapters); the web face answers the
challenges it publishes through the store (`web/acme.py`): HTTP-01 on the `http` listener,
TLS-ALPN-01 (RFC 8737) on the `https` listener.
"""

from __future__ import annotations

from mailhouse.config import Config, Listener

# the store mark holding the key authorization for an HTTP-01 token (RFC 8555 §8.3): "acme:http01:TOKEN"
HTTP01_PREFIX = "acme:http01:"
# the store mark holding the TLS-ALPN-01 validation certificate and key for NAME (RFC 8737 §3),
# JSON {"cert": PEM, "key": PEM}: "acme:tlsalpn01:NAME"
TLSALPN01_PREFIX = "acme:tlsalpn01:"
HTTP01, TLSALPN01 = "http-01", "tls-alpn-01"


def challenge_type(cfg: Config) -> str:
    """`[acme] challenge`, else http-01 when `[listen] http` is set, else tls-alpn-01 when
    `[listen] https` is, else http-01 (which then cannot be answered: the manager says so)."""
    if cfg.acme_challenge:
        return cfg.acme_challenge
    if Listener.HTTP not in cfg.listen and Listener.HTTPS in cfg.listen:
        return TLSALPN01
    return HTTP01
