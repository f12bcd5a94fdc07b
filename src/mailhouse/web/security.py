"""Web security: per-install secret, signed session cookie, CSRF tokens, response headers.

- Session: an itsdangerous-signed cookie `mh_session` = {account id, CSRF token, password
  fingerprint}; HttpOnly, SameSite=Strict, Secure when the request came over TLS, 12 h.
  A password change invalidates every session (the fingerprint no longer matches).
- CSRF (OWASP "synchronizer token"): logged in, the token lives in the session; before
  login a signed `mh_pre` cookie carries it (double submit, for login CSRF). Every
  state-changing request sends it as form field `csrf` or header `X-CSRF-Token`; a
  missing or wrong token, or a foreign `Origin`, is refused with 403.
- Headers: Content-Security-Policy `default-src 'none'` (scripts and styles from self
  only, images from self and data:, no framing, forms only to self), nosniff,
  referrer only to the webmail itself. A response may set its own CSP (reading with remote images allowed).

The secret is 32 random bytes kept in the store (`Store.shared_secret`), created by the
first worker or node to start and shared by every worker and node using that store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.store.api import Directory

SESSION_COOKIE = "mh_session"
PRE_COOKIE = "mh_pre"
SESSION_MAX_AGE = 12 * 3600  # seconds; re-login twice a day at most
SECRET_NAME = "web-session"  # Store.shared_secret name
LEGACY_SECRET_FILE = "web-secret"  # where versions before the shared secret kept it

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CSP_REMOTE_IMAGES = CSP.replace("img-src 'self' data:", "img-src 'self' data: https: http:")
# attachments and inline parts: nothing inside may run or load anything
CSP_DOWNLOAD = "default-src 'none'; sandbox"

#: RFC 6797 §6.1.1: one year (the preload lists' minimum); no includeSubDomains, since other
#: hosts of the domain may not speak HTTPS.
HSTS = b"max-age=31536000"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # nothing leaks to other sites
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]


async def load_secret(store: Directory, data_dir: Path) -> bytes:
    """The cookie key every worker and node shares: kept in the store, so all nodes of a
    PostgreSQL cluster accept each other's sessions. An install that still has the older
    `<data_dir>/web-secret` file offers it as the first value, so its sessions stay valid."""
    try:
        legacy = (data_dir / LEGACY_SECRET_FILE).read_bytes()
    except FileNotFoundError:
        legacy = b""
    candidate = legacy if len(legacy) >= 32 else secrets.token_bytes(32)
    return bytes.fromhex(await store.shared_secret(SECRET_NAME, candidate.hex()))


def password_fingerprint(password_hash: str, secret: bytes) -> str:
    return hmac.new(secret, password_hash.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(slots=True)
class SessionData:
    account_id: int
    csrf: str
    pwfp: str


class Sessions:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.signer = URLSafeTimedSerializer(secret, salt="mailhouse-session")
        self.pre_signer = URLSafeTimedSerializer(secret, salt="mailhouse-pre")

    # -- session cookie
    def read(self, request: Request) -> SessionData | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            d = self.signer.loads(raw, max_age=SESSION_MAX_AGE)
            return SessionData(int(d["a"]), str(d["c"]), str(d["p"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def issue(self, response: Response, request: Request, account_id: int, password_hash: str) -> None:
        data = {
            "a": account_id,
            "c": secrets.token_urlsafe(24),
            "p": password_fingerprint(password_hash, self.secret),
        }
        set_cookie(response, request, SESSION_COOKIE, self.signer.dumps(data), SESSION_MAX_AGE)
        response.delete_cookie(PRE_COOKIE, path="/")

    def clear(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")

    # -- pre-login CSRF token
    def pre_token(self, request: Request) -> tuple[str, str | None]:
        """(token, new cookie value to set or None)."""
        raw = request.cookies.get(PRE_COOKIE)
        if raw:
            try:
                return str(self.pre_signer.loads(raw, max_age=SESSION_MAX_AGE)), None
            except BadSignature:
                pass
        tok = secrets.token_urlsafe(24)
        return tok, self.pre_signer.dumps(tok)


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="strict", secure=is_tls(request)
    )


def check_origin(request: Request) -> None:
    """Refuse cross-site requests whose Origin names another site (defence in depth)."""
    origin = request.headers.get("origin")
    # "null" is what browsers send for privacy-sensitive contexts; the token still decides
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise HTTPException(403, "cross-origin request refused")


def check_token(expected: str | None, given: str | None) -> None:
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HTTPException(403, "missing or invalid CSRF token")


class SecurityHeaders:
    """Pure ASGI middleware (keeps streaming responses streaming): add the headers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                # RFC 6797 §7.2: HSTS only over a secure transport — our TLS, or a proxy in
                # [web] forwarded_allow_ips that said X-Forwarded-Proto: https (uvicorn sets the
                # scheme from it); never over plain HTTP, where an attacker could set it.
                if scope.get("scheme") == "https" and b"strict-transport-security" not in names:
                    headers.append((b"strict-transport-security", HSTS))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_wrapper)
