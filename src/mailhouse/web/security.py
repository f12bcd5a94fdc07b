"""Web security: per-install secret, signed session cookie, CSRF tokens, response headers.

- Session: server-side (issue 19). The cookie `mh_session` holds 32 random bytes; the store
  keeps only their SHA-256 with the account, CSRF token, created/last seen/expiry and a client
  summary (`Store.create_web_session`); HttpOnly, SameSite=Strict, Secure when the request came
  over TLS, 12 h. Every request reads the row (one indexed read, no per-node cache), so an
  ended session is refused at once on every node sharing the store: logout, "log out
  everywhere", revoking it on the settings page, any password change (`Store.set_password`
  ends the account's sessions in its transaction) and removing the account (rows cascade).
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
import time
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.store.api import Directory, Store, WebSession

SESSION_COOKIE = "mh_session"
PRE_COOKIE = "mh_pre"
SESSION_MAX_AGE = 12 * 3600  # seconds; re-login twice a day at most
SESSION_TOUCH = 60.0  # seconds: last_seen is written at most this often per session
CLIENT_MAX = 120  # characters of the client summary kept
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


def token_hash(token: str) -> str:
    """What the store keeps of a session cookie: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def client_summary(request: Request) -> str:
    """A short, human description of the client for the session list: browser and IP."""
    ua = request.headers.get("user-agent", "")
    browser = "browser"
    for name in ("Edg", "Firefox", "Chrome", "Safari", "curl", "python-httpx"):
        if name + "/" in ua:
            browser = {"Edg": "Edge"}.get(name, name)
            break
    ip = request.client.host if request.client else "?"
    return f"{browser}, {ip}"[:CLIENT_MAX]


class Sessions:
    def __init__(self, secret: bytes, store: Store) -> None:
        self.secret = secret
        self.store = store
        self.pre_signer = URLSafeTimedSerializer(secret, salt="mailhouse-pre")

    # -- session cookie
    async def read(self, request: Request) -> WebSession | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw or len(raw) > 100:
            return None
        now = time.time()
        sess = await self.store.get_web_session(token_hash(raw), now)
        if sess is not None and now - sess.last_seen > SESSION_TOUCH:
            await self.store.touch_web_session(sess.id_hash, now)
        return sess

    async def issue(self, response: Response, request: Request, account_id: int) -> WebSession:
        token = secrets.token_urlsafe(32)
        now = time.time()
        sess = WebSession(
            token_hash(token),
            account_id,
            secrets.token_urlsafe(24),
            now,
            now,
            now + SESSION_MAX_AGE,
            client_summary(request),
        )
        await self.store.create_web_session(sess)
        set_cookie(response, request, SESSION_COOKIE, token, SESSION_MAX_AGE)
        response.delete_cookie(PRE_COOKIE, path="/")
        return sess

    async def end(self, request: Request, response: Response) -> None:
        """Logout: the row goes (on every node at once), then the cookie."""
        raw = request.cookies.get(SESSION_COOKIE)
        if raw:
            await self.store.end_web_session(token_hash(raw))
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
