"""The ASGI application of the `http` listener: route table and error pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mailhouse.accounts.bans import Bans
from mailhouse.config import Listener
from mailhouse.store.api import StoreError, StoreUnavailable
from mailhouse.web import (
    acme,
    admin,
    autoconfig,
    contacts,
    filters,
    health,
    metrics,
    mtasts,
    settings,
    webmail,
)
from mailhouse.web.banned import BannedClients
from mailhouse.web.common import (
    HERE,
    LoginRequired,
    WebState,
    current_user,
    folder_tree,
    redirect,
    render,
    state,
)
from mailhouse.web.limits import BodyLimit
from mailhouse.web.redirect import HttpsRedirect
from mailhouse.web.security import SecurityHeaders

if TYPE_CHECKING:
    from mailhouse.services import Services

ROUTES = [
    Route("/", webmail.home),
    Route("/login", webmail.login_page, methods=["GET"]),
    Route("/login", webmail.login_post, methods=["POST"]),
    Route("/logout", webmail.logout, methods=["POST"]),
    Route("/folders", webmail.create_folder, methods=["POST"]),
    Route("/mail/{mb:int}", webmail.folder_view),
    Route("/mail/{mb:int}/list", webmail.folder_fragment),
    Route("/mail/{mb:int}/action", webmail.bulk_action, methods=["POST"]),
    Route("/mail/{mb:int}/{uid:int}", webmail.message_view),
    Route("/mail/{mb:int}/{uid:int}/part/{path}", webmail.part_download),
    Route("/mail/{mb:int}/{uid:int}/cid/{cid}", webmail.cid_part),
    Route("/compose", webmail.compose_page, methods=["GET"]),
    Route("/compose", webmail.compose_post, methods=["POST"]),
    Route("/events", webmail.events),
    Route("/contacts", contacts.contacts_page),  # issue 19 build 2: address book
    Route("/contacts/edit", contacts.edit_page),
    Route("/contacts/save", contacts.save, methods=["POST"]),
    Route("/contacts/delete", contacts.delete, methods=["POST"]),
    Route("/contacts/import", contacts.import_cards, methods=["POST"]),
    Route("/contacts/export.vcf", contacts.export),
    Route("/contacts/suggest", contacts.suggest),  # To/Cc/Bcc autocomplete (JSON)
    Route("/settings", settings.settings_page, methods=["GET"]),
    Route("/settings", settings.settings_post, methods=["POST"]),
    Route("/settings/mailhouse.mobileconfig", autoconfig.mobileconfig),
    Route("/filters", filters.filters_page, methods=["GET"]),  # issue 17 §4: Sieve editor, out-of-office
    Route("/filters", filters.filters_post, methods=["POST"]),
    Route("/admin", admin.admin_home),
    Route("/admin/domains", admin.admin_domains_post, methods=["POST"]),
    Route("/admin/domain/{name}", admin.admin_domain),
    Route("/admin/users", admin.admin_users_post, methods=["POST"]),
    Route("/admin/aliases", admin.admin_aliases_post, methods=["POST"]),
    Route("/admin/shares", admin.admin_shares_post, methods=["POST"]),
    Route("/admin/queue", admin.admin_queue, methods=["GET"]),
    Route("/admin/queue", admin.admin_queue_post, methods=["POST"]),
    Route("/.well-known/autoconfig/mail/config-v1.1.xml", autoconfig.thunderbird),
    Route("/mail/config-v1.1.xml", autoconfig.thunderbird),
    Route("/.well-known/acme-challenge/{token}", acme.challenge),  # RFC 8555 §8.3 HTTP-01
    Route("/.well-known/mta-sts.txt", mtasts.policy),  # RFC 8461 §3.3, on mta-sts.DOMAIN
    Route("/healthz", health.healthz),  # issue 16 §6: liveness
    Route("/readyz", health.readyz),  # readiness: store, not draining, queue runner
    Route("/metrics", metrics.metrics_page),  # Prometheus; [metrics] allow_ips / token
    Route("/autodiscover/autodiscover.xml", autoconfig.autodiscover, methods=["POST"]),
    Route("/Autodiscover/Autodiscover.xml", autoconfig.autodiscover, methods=["POST"]),
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
]


async def _login_required(request: Request, exc: Exception) -> Response:
    accept = request.headers.get("accept", "")
    if request.method == "GET" and "text/event-stream" not in accept and "application/json" not in accept:
        return redirect("/login")
    return PlainTextResponse("login required", status_code=401)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code)
    if "text/html" in request.headers.get("accept", ""):
        ctx = await _error_layout(request)
        return render(
            request, "error.html", status=exc.status_code, code=exc.status_code, detail=exc.detail, **ctx
        )
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code)


async def _error_layout(request: Request) -> dict[str, Any]:
    """Issue 19: an error page shown to someone logged in keeps the logged-in layout (nav, user,
    folders), whichever handler (or the router, for an unknown path) raised it."""
    user = getattr(request.state, "user", None)
    try:
        if user is None:
            user = await current_user(request)
        if user is None:
            return {}
        request.state.user = user
        return {"user": user, "folders": await folder_tree(state(request).svc, user), "current": None}
    except StoreError:
        return {}  # the store went away meanwhile: the plain page


#: Seconds a client is asked to wait after a store outage (RFC 9110 §10.2.3 Retry-After).
STORE_RETRY_AFTER = 30


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """The store is down (issue 12 item 11): 503 with Retry-After (RFC 9110 §15.6.4), not a 500."""
    detail = "The mail store is temporarily unavailable. Please try again in a moment."
    headers = {"Retry-After": str(STORE_RETRY_AFTER)}
    if "text/html" in request.headers.get("accept", ""):
        try:
            resp: Response = render(request, "error.html", status=503, code=503, detail=detail)
            resp.headers.update(headers)
            return resp
        except Exception:  # noqa: BLE001 - rendering must not turn the 503 into a 500
            pass
    return PlainTextResponse(detail, status_code=503, headers=headers)


def create_app(svc: Services, secret: bytes) -> SecurityHeadersApp:
    app = Starlette(
        routes=ROUTES,
        exception_handlers={
            LoginRequired: _login_required,
            HTTPException: _http_error,
            StoreUnavailable: _store_unavailable,
        },
    )
    web = WebState.build(svc, secret)
    app.state.web = web
    app.state.closing = web.closing
    https = svc.cfg.listen.get(Listener.HTTPS)
    return SecurityHeadersApp(
        app, svc.cfg.max_message_size, svc.auth.bans, https_port=https[0][1] if https else None
    )


class SecurityHeadersApp(SecurityHeaders):
    """The Starlette app behind the request body limits (`web.limits`), wrapped in the
    security headers; `.state` reaches the app's. With HTTPS_PORT, plain HTTP is redirected."""

    def __init__(
        self, app: Starlette, max_message_size: int, bans: Bans | None = None, https_port: int | None = None
    ) -> None:
        inner: Any = BodyLimit(app, max_message_size)
        if bans is not None:
            inner = BannedClients(inner, bans)  # banned: 403
        if https_port is not None:
            inner = HttpsRedirect(inner, https_port, app.state.web.svc.cfg.hostname)
        super().__init__(inner)
        self.starlette = app

    @property
    def state(self) -> Any:
        return self.starlette.state
