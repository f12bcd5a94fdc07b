"""Shared plumbing of the web face: app state, the logged-in user, CSRF-checked forms,
template rendering, folder tree with unread counts."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from mailhouse.store.api import SPECIAL_MAILBOXES, Account, Mailbox, MessageRecord
from mailhouse.web import security
from mailhouse.web.limits import FORM_LIMIT, MAX_FORM_FIELDS
from mailhouse.web.mailview import Summary, SummaryCache, summarize
from mailhouse.web.uploads import UPLOAD_DIR, UploadSpool

if TYPE_CHECKING:
    from mailhouse.services import Services

HERE = Path(__file__).parent
MAX_FORM_FILES = 20  # attachments per compose
SPECIAL_ORDER = {name: i for i, (name, _) in enumerate(SPECIAL_MAILBOXES)}
SUMMARY_CONCURRENCY = 16  # blob reads in flight while building a list


class LoginRequired(Exception):
    pass


@dataclass
class WebState:
    svc: Services
    sessions: security.Sessions
    env: Environment
    summaries: SummaryCache
    closing: asyncio.Event
    uploads: UploadSpool  # compose attachments on disk (issue 12 item 2)

    @classmethod
    def build(cls, svc: Services, secret: bytes) -> WebState:
        env = Environment(
            loader=FileSystemLoader(str(HERE / "templates")),
            autoescape=select_autoescape(["html", "xml"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["size"] = human_size
        env.filters["when"] = when
        uploads = UploadSpool(svc.cfg.data_dir / UPLOAD_DIR, svc.cfg.max_message_size)
        return cls(svc, security.Sessions(secret, svc.store), env, SummaryCache(), asyncio.Event(), uploads)


def state(request: Request) -> WebState:
    st: WebState = request.app.state.web
    return st


def human_size(n: int) -> str:
    f = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if f < 1024 or unit == "GB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return f"{n} B"


def when(ts: float) -> str:
    """List date: time today, day and month this year, else the ISO date (server's zone)."""
    d = dt.datetime.fromtimestamp(ts)
    now = dt.datetime.now()
    if d.date() == now.date():
        return d.strftime("%H:%M")
    if d.year == now.year:
        return d.strftime("%b %d")
    return d.strftime("%Y-%m-%d")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


async def current_user(request: Request) -> Account | None:
    st = state(request)
    sess = await st.sessions.read(request)
    if sess is None:
        return None  # none, expired or ended (logout, password change: web/security.py)
    acc = await st.svc.store.get_account_by_id(sess.account_id)
    if acc is None:
        return None
    request.state.csrf = sess.csrf
    request.state.session = sess
    return acc


async def require_user(request: Request) -> Account:
    acc = await current_user(request)
    if acc is None:
        raise LoginRequired()
    return acc


async def require_admin(request: Request) -> Account:
    acc = await require_user(request)
    if not acc.is_admin:
        raise HTTPException(403, "administrators only")
    return acc


def csrf_token(request: Request) -> str:
    tok = getattr(request.state, "csrf", None)
    if tok:
        return str(tok)
    pre, cookie = state(request).sessions.pre_token(request)
    request.state.csrf = pre
    request.state.set_pre_cookie = cookie
    return pre


async def checked_form(request: Request, *, max_files: int = 0, max_part_size: int = FORM_LIMIT) -> FormData:
    """The POSTed form, after the Origin and CSRF checks (403 otherwise). The body itself
    is bounded by `limits.BodyLimit`; here the number of fields and each (non-file) field's
    size (400 beyond); uploaded files are spooled to disk past 1 MiB."""
    security.check_origin(request)
    expected = csrf_token(request)
    header = request.headers.get("x-csrf-token")
    form = await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS, max_part_size=max_part_size)
    given = header or form.get("csrf")
    security.check_token(expected, given if isinstance(given, str) else None)
    return form


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    st = state(request)
    ctx.setdefault("user", getattr(request.state, "user", None))
    ctx["csrf"] = csrf_token(request)
    ctx["request"] = request
    html = st.env.get_template(template).render(**ctx)
    resp = HTMLResponse(html, status_code=status)
    cookie = getattr(request.state, "set_pre_cookie", None)
    if cookie:
        security.set_cookie(resp, request, security.PRE_COOKIE, cookie, security.SESSION_MAX_AGE)
    return resp


def render_fragment(request: Request, template: str, **ctx: Any) -> str:
    ctx["csrf"] = csrf_token(request)
    ctx["request"] = request
    return state(request).env.get_template(template).render(**ctx)


def same_site_path(url: str) -> bool:
    """True for a path on this site only: "/" then not "/" or "\\" (browsers read "//host" and
    "/\\host" as another host, WHATWG URL §4.4), and no whitespace or control characters
    anywhere (browsers drop tab/CR/LF, so "/<TAB>/host" becomes "//host")."""
    if not url.startswith("/") or url[1:2] in ("/", "\\"):
        return False
    return not any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url)


def redirect(url: str) -> Response:
    return Response(status_code=303, headers={"location": url})


# ------------------------------------------------------------------ mailboxes
@dataclass(slots=True)
class FolderInfo:
    mailbox: Mailbox
    label: str
    depth: int
    unread: int
    total: int


def sort_mailboxes(mbs: list[Mailbox]) -> list[Mailbox]:
    return sorted(
        mbs,
        key=lambda m: (
            m.name.split("/")[0] not in SPECIAL_ORDER,
            SPECIAL_ORDER.get(m.name.split("/")[0], 0),
            m.name.casefold(),
        ),
    )


async def folder_tree(svc: Services, user: Account) -> list[FolderInfo]:
    out = []
    for mb in sort_mailboxes(await svc.store.list_mailboxes(user.id)):
        recs = await svc.store.list_messages(mb.id)
        unread = sum(1 for r in recs if "\\Seen" not in r.flags and "\\Deleted" not in r.flags)
        parts = mb.name.split("/")
        out.append(FolderInfo(mb, parts[-1], len(parts) - 1, unread, len(recs)))
    return out


async def own_mailbox(svc: Services, user: Account, mailbox_id: int) -> Mailbox:
    mb = await svc.store.get_mailbox_by_id(mailbox_id)
    if mb is None or mb.account_id != user.id:
        raise HTTPException(404, "no such folder")
    return mb


async def mailbox_named(svc: Services, user: Account, name: str, special: str | None = None) -> Mailbox:
    mb = await svc.store.get_mailbox(user.id, name)
    if mb is None:
        mb = await svc.store.create_mailbox(user.id, name, special)
    return mb


async def find_record(svc: Services, mb: Mailbox, uid: int) -> MessageRecord:
    for r in await svc.store.list_messages(mb.id):
        if r.uid == uid:
            return r
    raise HTTPException(404, "no such message")


async def summaries(st: WebState, recs: list[MessageRecord]) -> list[tuple[MessageRecord, Summary]]:
    sem = asyncio.Semaphore(SUMMARY_CONCURRENCY)

    async def one(r: MessageRecord) -> tuple[MessageRecord, Summary]:
        s = st.summaries.get(r.blob_key)
        if s is None:
            async with sem:
                raw = await st.svc.store.blobs.get(r.blob_key)
            s = await asyncio.to_thread(summarize, raw) if len(raw) > 256 * 1024 else summarize(raw)
            st.summaries.put(r.blob_key, s)
        return r, s

    return list(await asyncio.gather(*(one(r) for r in recs if "\\Deleted" not in r.flags)))
