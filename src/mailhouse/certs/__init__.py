"""Certificates the node obtains for itself (issue 16 §2): the ACME client in `certs.acme`.

A service used by `app.py` (never imported by the protocol adapters); the web face answers the
HTTP-01 challenges it publishes through the store (`web/acme.py`).
"""

from __future__ import annotations

# the store mark holding the key authorization for an HTTP-01 token (RFC 8555 §8.3): "acme:http01:TOKEN"
HTTP01_PREFIX = "acme:http01:"
