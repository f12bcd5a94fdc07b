"""Webmail settings page (issue 19 Build 1, first part): display name, signature, reply-to, own
password change, "log out everywhere" and the list of active sessions with revoke.

Settings are per-user key/values in the store (`Store.user_settings`, keys in `KEYS`); sending
reads them (`web/send.py` puts the display name in From, the reply-to in Reply-To; compose
appends the signature). Sessions are the server-side ones of `web/security.py`:
- a password change needs the current password (checked through `auth.check`, so failures count
  towards the same per-IP throttle as logins); setting it ends every session of the account in
  the store's transaction, then this browser gets a new one — the OTHER sessions are ended;
- "log out everywhere" ends every session, this one included;
- revoking one session ends it on every node at its next request.
"""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.accounts.admin import Admin, AdminError
from mailhouse.store.api import Account, WebSession
from mailhouse.web import security
from mailhouse.web.common import checked_form, client_ip, folder_tree, redirect, render, require_user, state
from mailhouse.web.send import SendError, parse_recipients

NAME = "name"
SIGNATURE = "signature"
REPLY_TO = "reply_to"
KEYS = (NAME, SIGNATURE, REPLY_TO)
MAX_NAME = 200  # characters of the display name
MAX_SIGNATURE = 4000  # characters of the signature
MAX_REPLY_TO = 1000

MESSAGES = {
    "saved": "Settings saved.",
    "password": "Password changed. Your other sessions were logged out.",
    "revoked": "Session logged out.",
}


def one_line(value: str, limit: int) -> str:
    return " ".join(value.replace("\0", " ").split())[:limit]


def signature_block(signature: str) -> str:
    """The signature appended to a new message: after the usual "-- " separator line."""
    sig = signature.replace("\r\n", "\n").strip("\n")
    return f"\n\n-- \n{sig}\n" if sig.strip() else ""


async def _page(request: Request, user: Account, error: str | None = None, status: int = 200) -> Response:
    st = state(request)
    now = time.time()
    current: WebSession | None = getattr(request.state, "session", None)
    return render(
        request,
        "settings.html",
        status=status,
        folders=await folder_tree(st.svc, user),
        current=None,
        s=await st.svc.store.user_settings(user.id),
        sessions=await st.svc.store.list_web_sessions(user.id, now),
        this=current.id_hash if current else "",
        error=error,
        notice=MESSAGES.get(request.query_params.get("done", "")),
    )


async def settings_page(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    return await _page(request, user)


async def settings_post(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    form = await checked_form(request)
    st = state(request)
    store = st.svc.store
    action = str(form.get("action", ""))

    def f(name: str) -> str:
        v = form.get(name, "")
        return v if isinstance(v, str) else ""

    if action == "profile":
        reply_to = one_line(f(REPLY_TO), MAX_REPLY_TO)
        try:
            parse_recipients(reply_to)
        except SendError as e:
            return await _page(request, user, error=f"Reply-to: {e}", status=400)
        values = {
            NAME: one_line(f(NAME), MAX_NAME),
            SIGNATURE: f(SIGNATURE).replace("\r\n", "\n")[:MAX_SIGNATURE],
            REPLY_TO: reply_to,
        }
        for key, value in values.items():
            await store.set_user_setting(user.id, key, value if value.strip() else None)
        return redirect("/settings?done=saved")
    if action == "password":
        new, confirm = f("new")[:1024], f("confirm")[:1024]
        if await st.svc.auth.check(user.address, f("current")[:1024], client_ip(request), "web") is None:
            return await _page(request, user, error="The current password is wrong.", status=400)
        if new != confirm:
            return await _page(request, user, error="The new passwords differ.", status=400)
        try:  # ends every session of the account (store/websessions.py) …
            await Admin(store, st.svc.cfg.dkim_selector).set_password(user.address, new)
        except AdminError as e:
            return await _page(request, user, error=str(e).capitalize() + ".", status=400)
        resp = redirect("/settings?done=password")
        await st.sessions.issue(resp, request, user.id)  # … and this browser stays logged in
        return resp
    if action == "logout_all":
        await store.end_web_sessions(user.id)
        resp = redirect("/login")
        resp.delete_cookie(security.SESSION_COOKIE, path="/")
        return resp
    if action == "revoke":
        target = f("session")[:128]
        mine = {s.id_hash for s in await store.list_web_sessions(user.id, time.time())}
        if target not in mine:
            raise HTTPException(404, "no such session")
        await store.end_web_session(target)
        current: WebSession | None = getattr(request.state, "session", None)
        if current is not None and current.id_hash == target:
            resp = redirect("/login")
            resp.delete_cookie(security.SESSION_COOKIE, path="/")
            return resp
        return redirect("/settings?done=revoked")
    raise HTTPException(400, "unknown action")
