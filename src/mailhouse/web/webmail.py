"""Webmail pages: login, folders, message list, reading, attachments, compose, actions, live events.

Server-rendered (Jinja2) with one small script (`static/app.js`) for keyboard
shortcuts and live updates over server-sent events fed by the store's change feed.
Every state change is a POST carrying the CSRF token (`common.checked_form`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mailhouse.accounts import mailbox_names
from mailhouse.message.parse import parse_message
from mailhouse.store.api import Account, FlagMode, Mailbox, WebSession
from mailhouse.web import contacts, security
from mailhouse.web import search as websearch
from mailhouse.web import settings as websettings
from mailhouse.web.common import (
    MAX_FORM_FILES,
    checked_form,
    client_ip,
    current_user,
    find_record,
    folder_tree,
    mailbox_named,
    own_mailbox,
    redirect,
    render,
    render_fragment,
    require_user,
    same_site_path,
    state,
    summaries,
)
from mailhouse.web.mailview import (
    addresses,
    attachments,
    body_of,
    find_cid,
    find_part,
    flat_rows,
    fmt_addr,
    header_text,
    part_bytes,
    safe_filename,
    spam_panel,
    summarize,
    thread_of,
    thread_rows,
)
from mailhouse.web.sanitize import cid_path, html_to_text_async, quick_text_async, sanitize_html_async
from mailhouse.web.send import (
    DRAFTS,
    SENT,
    Attachment,
    Draft,
    SendError,
    SendLimited,
    build_message_file,
    spooled_file,
    store_copy,
    submit,
)
from mailhouse.web.uploads import RequestUploads, UploadTooBig

if TYPE_CHECKING:
    from mailhouse.services import Services

log = logging.getLogger(__name__)

PAGE_SIZE = 50
SSE_HEARTBEAT = 15.0  # seconds between keep-alive comments (proxies drop idle streams)
SAFE_INLINE_TYPES = {"image/png", "image/gif", "image/jpeg", "image/webp"}


# ------------------------------------------------------------------ login
async def home(request: Request) -> Response:
    user = await current_user(request)
    if user is None:
        return redirect("/login")
    inbox = await mailbox_named(state(request).svc, user, "INBOX")
    return redirect(f"/mail/{inbox.id}")


async def login_page(request: Request) -> Response:
    if await current_user(request) is not None:
        return redirect("/")
    return render(request, "login.html", error=None, username="")


async def login_post(request: Request) -> Response:
    form = await checked_form(request)
    st = state(request)
    username = str(form.get("username", ""))[:320]
    password = str(form.get("password", ""))[:1024]
    acc = await st.svc.auth.check(username, password, client_ip(request), "web")  # shared per-IP throttle
    if acc is None:
        return render(
            request, "login.html", status=401, error="Wrong address or password.", username=username
        )
    log.info("webmail login %s from %s", acc.address, client_ip(request))
    resp = redirect("/")
    await st.sessions.issue(resp, request, acc.id)
    return resp


async def logout(request: Request) -> Response:
    await require_user(request)
    await checked_form(request)
    resp = redirect("/login")
    await state(request).sessions.end(request, resp)
    return resp


# ------------------------------------------------------------------ folders and lists
async def _list_context(request: Request, user: Account, mb: Mailbox) -> dict[str, Any]:
    st = state(request)
    q = request.query_params.get("q", "").strip()[:200]
    threaded = request.query_params.get("threads", "1") != "0" and not q
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    recs = [r for r in await st.svc.store.list_messages(mb.id) if "\\Deleted" not in r.flags]
    too_long = False
    if q:  # issue 12 item 4: off the loop, bounded (web/search.py)
        cfg = st.svc.cfg
        res = await websearch.search(
            st.svc.store,
            recs,
            q,
            time_budget=cfg.search_time_budget,
            max_decoded_bytes=cfg.search_max_decoded_bytes,
        )
        recs, too_long = res.found, res.too_long
    items = await summaries(st, recs)
    rows = thread_rows(items) if threaded else flat_rows(items)
    pages = max(1, (len(rows) + PAGE_SIZE - 1) // PAGE_SIZE)
    page = min(page, pages)
    return {
        "mailbox": mb,
        "rows": rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        "page": page,
        "pages": pages,
        "q": q,
        "search_error": websearch.TOO_LONG_NOTICE if too_long else "",
        "threaded": threaded,
        "total": len(rows),
        "qs": ("&q=" + quote(q)) if q else ("&threads=0" if not threaded else ""),
    }


async def folder_view(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    svc = state(request).svc
    mb = await own_mailbox(svc, user, request.path_params["mb"])
    ctx = await _list_context(request, user, mb)
    folders = await folder_tree(svc, user)
    return render(request, "folder.html", folders=folders, current=mb, **ctx)


async def folder_fragment(request: Request) -> Response:
    """The list and the folder tree as HTML fragments (live updates)."""
    user = await require_user(request)
    svc = state(request).svc
    mb = await own_mailbox(svc, user, request.path_params["mb"])
    ctx = await _list_context(request, user, mb)
    folders = await folder_tree(svc, user)
    return JSONResponse(
        {  # the list's Move menu is built from FOLDERS too (issue 19: it was empty, Move 404)
            "list": render_fragment(request, "_list.html", folders=folders, **ctx),
            "folders": render_fragment(request, "_folders.html", folders=folders, current=mb),
        }
    )


async def create_folder(request: Request) -> Response:
    user = await require_user(request)
    form = await checked_form(request)
    name = " ".join(str(form.get("name", "")).split())[:200].strip("/")
    try:
        name = mailbox_names.check_new_name(name)  # the same policy as IMAP CREATE/RENAME
    except mailbox_names.MailboxNameError as e:
        raise HTTPException(400, f"invalid folder name: {e}") from None
    mb = await mailbox_named(state(request).svc, user, name)
    await state(request).svc.store.set_subscribed(user.id, name, True)
    return redirect(f"/mail/{mb.id}")


# ------------------------------------------------------------------ reading
async def _load(request: Request, user: Account) -> tuple[Mailbox, Any, bytes, Any]:
    svc = state(request).svc
    mb = await own_mailbox(svc, user, request.path_params["mb"])
    rec = await find_record(svc, mb, request.path_params["uid"])
    raw = await svc.store.blobs.get(rec.blob_key)
    return mb, rec, raw, parse_message(raw)


async def message_view(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    st = state(request)
    svc = st.svc
    mb, rec, raw, tree = await _load(request, user)
    if "\\Seen" not in rec.flags:
        await svc.store.store_flags(mb.id, [rec.uid], FlagMode.ADD, frozenset({"\\Seen"}))
    allow_remote = request.query_params.get("images") == "1"
    want_text = request.query_params.get("text") == "1"
    body = body_of(raw, tree)
    base = f"/mail/{mb.id}/{rec.uid}"
    html = None
    blocked = 0
    text, fallback = body.text, None
    if body.html is not None and not want_text:
        clean = await sanitize_html_async(body.html, allow_remote=allow_remote, cid_url=cid_path(base))
        html, blocked, fallback = clean.html, clean.remote_blocked, clean.fallback
        if fallback is not None:  # issue 12: too slow or too big; plain text instead of a frozen node
            html, text = None, text if text is not None else await quick_text_async(body.html)
    items = await summaries(st, await svc.store.list_messages(mb.id))
    conv_uids = thread_of(items, rec.uid)
    by_uid = {r.uid: (r, s) for r, s in items}
    conversation = [by_uid[u] for u in conv_uids if u in by_uid and len(conv_uids) > 1]
    conversation.sort(key=lambda rs: rs[1].date.timestamp() if rs[1].date else rs[0].internaldate)
    folders = await folder_tree(svc, user)
    resp = render(
        request,
        "message.html",
        folders=folders,
        current=mb,
        rec=rec,
        base=base,
        subject=header_text(tree, "subject"),
        from_=[fmt_addr(a) for a in addresses(tree, "from")],
        to=[fmt_addr(a) for a in addresses(tree, "to")],
        cc=[fmt_addr(a) for a in addresses(tree, "cc")],
        date=header_text(tree, "date"),
        html=html,
        text=text if (html is None) else None,
        fallback=fallback,
        has_text=body.text is not None and body.html is not None,
        want_text=want_text,
        blocked=blocked,
        allow_remote=allow_remote,
        attachments=attachments(raw, tree),
        conversation=conversation,
        flagged="\\Flagged" in rec.flags,
        is_draft=mb.name == DRAFTS,
        spam=await spam_panel(svc.store, svc.cfg.hostname, tree, mb.special_use == "\\Junk"),
    )
    if allow_remote:
        resp.headers["content-security-policy"] = security.CSP_REMOTE_IMAGES
    return resp


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"  # RFC 6266


async def part_download(request: Request) -> Response:
    user = await require_user(request)
    mb, rec, raw, tree = await _load(request, user)
    path = request.path_params["path"]
    if not re.fullmatch(r"\d+(\.\d+)*", path):
        raise HTTPException(404)
    p = find_part(tree, path)
    if p is None:
        raise HTTPException(404, "no such part")
    ext = ".eml" if p.type == "message" else ".bin"
    name = safe_filename(p.filename, f"part-{path}{ext}")
    ctype = "message/rfc822" if p.type == "message" else "application/octet-stream"
    return Response(
        part_bytes(raw, p),
        media_type=ctype,
        headers={"content-disposition": _disposition(name), "content-security-policy": security.CSP_DOWNLOAD},
    )


async def cid_part(request: Request) -> Response:
    user = await require_user(request)
    mb, rec, raw, tree = await _load(request, user)
    p = find_cid(tree, request.path_params["cid"])
    if p is None or p.mime_type not in SAFE_INLINE_TYPES:
        raise HTTPException(404)
    return Response(
        part_bytes(raw, p), media_type=p.mime_type, headers={"content-security-policy": security.CSP_DOWNLOAD}
    )


# ------------------------------------------------------------------ actions
def blob_reader(svc: Services, key: str) -> Callable[[int], Awaitable[bytes | None]]:
    async def read(limit: int) -> bytes | None:
        return await svc.store.blobs.read_range(key, 0, limit)

    return read


async def bulk_action(request: Request) -> Response:
    user = await require_user(request)
    form = await checked_form(request)
    svc = state(request).svc
    mb = await own_mailbox(svc, user, request.path_params["mb"])
    uids = sorted({int(u) for v in form.getlist("uid") for u in str(v).split(",") if u.isdigit()})
    action = str(form.get("action", ""))
    back = str(form.get("back", "")) or f"/mail/{mb.id}"
    if not same_site_path(back):
        back = f"/mail/{mb.id}"
    if not uids:
        return redirect(back)
    store = svc.store
    if action == "delete":
        trash = await mailbox_named(svc, user, "Trash", "\\Trash")
        if mb.id == trash.id or mb.name == DRAFTS:
            await store.expunge(mb.id, uids)  # deleting from Trash (or a draft) is for good
        else:
            await store.move(mb.id, uids, trash.id)
        back = f"/mail/{mb.id}" if "/mail/" in back and back.count("/") > 2 else back
    elif action in ("move", "spam", "notspam"):
        if action == "move":
            dest = await own_mailbox(svc, user, int(str(form.get("dest", "0")) or 0))
        else:  # issue 14 §3-4: "Spam" files into Junk; "Not spam" into INBOX (+ trains, allows sender)
            dest = await (
                mailbox_named(svc, user, "Junk", "\\Junk")
                if action == "spam"
                else mailbox_named(svc, user, "INBOX")
            )
        keys = {r.uid: r.blob_key for r in await store.list_messages(mb.id) if r.uid in set(uids)}
        if dest.id != mb.id:
            await store.move(mb.id, uids, dest.id)
        readers = [blob_reader(svc, keys[u]) for u in uids if u in keys]
        if action == "move":
            await svc.learning.moved(user.id, readers, mb.special_use, dest.special_use)
        else:
            await svc.learning.judged(user.id, readers, spam=action == "spam")
        back = f"/mail/{mb.id}" if back.count("/") > 2 else back
    elif action in ("flag", "unflag", "read", "unread"):
        flag = "\\Flagged" if action in ("flag", "unflag") else "\\Seen"
        mode = FlagMode.ADD if action in ("flag", "read") else FlagMode.REMOVE
        await store.store_flags(mb.id, uids, mode, frozenset({flag}))
    else:
        raise HTTPException(400, "unknown action")
    if request.headers.get("x-requested-with") == "fetch":
        return JSONResponse({"ok": True})
    return redirect(back)


# ------------------------------------------------------------------ compose
def _quote_body(text: str, who: str, when: str) -> str:
    quoted = "\n".join("> " + line if line else ">" for line in text.strip("\n").splitlines())
    return f"\n\nOn {when}, {who} wrote:\n{quoted}\n"


def _re(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}".strip()


async def compose_page(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    st = state(request)
    svc = st.svc
    qp = request.query_params
    owned = sorted(await svc.resolver.owned_addresses(user), key=lambda a: (a != user.address, a))
    d = Draft(sender=user.address, to=qp.get("to", "")[:1000], subject=qp.get("subject", "")[:500])
    carried: list[tuple[str, str, int]] = []  # (ref "mb:uid:path", filename, size)
    draft_uid = ""
    ref = qp.get("reply") or qp.get("forward") or qp.get("draft")
    if ref:
        try:
            if qp.get("draft"):
                mb = await mailbox_named(svc, user, DRAFTS, "\\Drafts")
                uid = int(qp["draft"])
            else:
                mb_id, _, uid_s = ref.partition(":")
                mb = await own_mailbox(svc, user, int(mb_id))
                uid = int(uid_s)
        except ValueError:
            raise HTTPException(400, "bad reference") from None
        rec = await find_record(svc, mb, uid)
        raw = await svc.store.blobs.get(rec.blob_key)
        tree = parse_message(raw)
        body = body_of(raw, tree)
        text = body.text if body.text is not None else await html_to_text_async(body.html or "")
        subject = header_text(tree, "subject")
        from_ = addresses(tree, "from")
        mid = (tree.get(b"message-id") or b"").decode("latin-1").strip()
        if qp.get("draft"):
            d = Draft(
                sender=(from_[0][1] if from_ else user.address),
                to=", ".join(fmt_addr(a) for a in addresses(tree, "to")),
                cc=", ".join(fmt_addr(a) for a in addresses(tree, "cc")),
                bcc=", ".join(fmt_addr(a) for a in addresses(tree, "bcc")),
                subject=subject,
                body=text,
                in_reply_to=header_text(tree, "in-reply-to"),
                references=header_text(tree, "references"),
            )
            draft_uid = str(uid)
            carried = [(f"{mb.id}:{uid}:{a.path}", a.filename, a.size) for a in attachments(raw, tree)]
        elif qp.get("reply"):
            reply_to = addresses(tree, "reply-to") or from_
            d.to = ", ".join(fmt_addr(a) for a in reply_to)
            if qp.get("all") == "1":
                me = await svc.resolver.owned_addresses(user)
                others = [
                    a
                    for a in addresses(tree, "to") + addresses(tree, "cc")
                    if a[1].lower() not in me and a not in reply_to
                ]
                d.cc = ", ".join(fmt_addr(a) for a in others)
            d.subject = _re("Re:", subject)
            d.body = _quote_body(text, fmt_addr(from_[0]) if from_ else "someone", header_text(tree, "date"))
            d.in_reply_to = mid
            refs = header_text(tree, "references")
            d.references = f"{refs} {mid}".strip()  # RFC 5322 §3.6.4
            for to_addr in addresses(tree, "to") + addresses(tree, "cc"):
                if to_addr[1].lower() in owned:
                    d.sender = to_addr[1].lower()
                    break
        else:  # forward: the text inline, the attachments carried over
            d.subject = _re("Fwd:", subject)
            head = "\n".join(
                f"{k}: {v}"
                for k, v in (
                    ("From", ", ".join(fmt_addr(a) for a in from_)),
                    ("Date", header_text(tree, "date")),
                    ("Subject", subject),
                    ("To", ", ".join(fmt_addr(a) for a in addresses(tree, "to"))),
                )
                if v
            )
            d.body = f"\n\n---------- Forwarded message ----------\n{head}\n\n{text}"
            carried = [(f"{mb.id}:{uid}:{a.path}", a.filename, a.size) for a in attachments(raw, tree)]
    if not qp.get("draft"):  # settings: the signature, above any quoted or forwarded text
        prefs = await svc.store.user_settings(user.id)
        d.body = websettings.signature_block(prefs.get(websettings.SIGNATURE, "")) + d.body
    folders = await folder_tree(svc, user)
    return render(
        request,
        "compose.html",
        folders=folders,
        current=None,
        d=d,
        owned=owned,
        carried=carried,
        draft_uid=draft_uid,
        error=None,
    )


async def _carried(request: Request, user: Account, refs: list[str]) -> list[Attachment]:
    svc = state(request).svc
    out = []
    for ref in refs[:50]:
        m = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)*)", ref)
        if not m:
            continue
        mb = await own_mailbox(svc, user, int(m.group(1)))
        rec = await find_record(svc, mb, int(m.group(2)))
        raw = await svc.store.blobs.get(rec.blob_key)
        tree = parse_message(raw)
        for a in attachments(raw, tree):
            if a.path == m.group(3):
                out.append(Attachment(a.filename, a.mime_type, part_bytes(raw, a.part)))
    return out


async def _compose_send(
    request: Request,
    user: Account,
    form: FormData,
    d: Draft,
    keep: list[str],
    draft_uid: str,
    spool: RequestUploads,
) -> Response:
    """Build the message (attachments streamed from their files) and send or save it."""
    svc = state(request).svc
    uploads = [up for up in form.getlist("attach") if isinstance(up, UploadFile) and up.filename]
    if sum(up.size or 0 for up in uploads) > svc.cfg.max_message_size:
        raise SendError("message too big")  # before anything is copied
    for up in uploads:
        await spool.add(up.file, safe_filename(up.filename or "", "attachment"), up.content_type or "")
    files = [Attachment(a.filename, a.content_type, b"", a.path) for a in spool.files]
    d.attachments = await _carried(request, user, keep) + files
    await contacts.expand_groups(svc, user, d)  # group names in To/Cc/Bcc become their members
    out = spool.spool_path()
    size = await asyncio.to_thread(build_message_file, d, svc.cfg.hostname, out)
    if size > svc.cfg.max_message_size:
        raise SendError("message too big")
    # issue 12 item 2: the header section in memory, the body a range of OUT, which lives until
    # the request's files are removed (after the copies below are made)
    message = await asyncio.to_thread(spooled_file, out, size)
    drafts = await mailbox_named(svc, user, DRAFTS, "\\Drafts")
    if form.get("action") == "save":
        uid = await store_copy(svc, user, DRAFTS, message, frozenset({"\\Draft", "\\Seen"}))
        if draft_uid.isdigit():
            await svc.store.expunge(drafts.id, [int(draft_uid)])
        return redirect(f"/compose?draft={uid}&saved=1")
    from mailhouse.web.send import parse_recipients

    rcpts = parse_recipients(d.to) + parse_recipients(d.cc) + parse_recipients(d.bcc)
    # Bcc stays in the Sent copy; the MSA (Submission.prepare) removes it from what is delivered
    await submit(svc, user, d.sender, rcpts, message, client_ip(request))
    await contacts.collect_sent(svc, user, d)  # autocomplete remembers the recipients
    await store_copy(svc, user, SENT, message, frozenset({"\\Seen"}))
    if draft_uid.isdigit():
        await svc.store.expunge(drafts.id, [int(draft_uid)])
    inbox = await mailbox_named(svc, user, "INBOX")
    return redirect(f"/mail/{inbox.id}?sent=1")


async def compose_post(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    svc = state(request).svc
    form = await checked_form(request, max_files=MAX_FORM_FILES, max_part_size=svc.cfg.max_message_size)

    def f(name: str, limit: int = 2000) -> str:
        v = form.get(name, "")
        return v[:limit] if isinstance(v, str) else ""

    d = Draft(
        sender=f("from", 320).strip().lower() or user.address,
        to=f("to", 10000),
        cc=f("cc", 10000),
        bcc=f("bcc", 10000),
        subject=f("subject", 1000),
        body=f("body", svc.cfg.max_message_size),
        in_reply_to=f("in_reply_to", 1000),
        references=f("references", 10000),
    )
    prefs = await svc.store.user_settings(user.id)  # settings: From's display name, Reply-To
    d.name = prefs.get(websettings.NAME, "")
    d.reply_to = prefs.get(websettings.REPLY_TO, "")
    keep = [str(x) for x in form.getlist("keep")]
    draft_uid = f("draft_uid", 20)
    error = None
    status = 400
    try:
        # issue 12 item 2: uploads are copied to files under the data dir (web.uploads) and the
        # message is built by streaming their base64 into a spool file; all removed on exit
        async with state(request).uploads.request(user.id) as spool:
            return await _compose_send(request, user, form, d, keep, draft_uid, spool)
    except (SendError, UploadTooBig) as e:
        error = str(e)
        status = 429 if isinstance(e, SendLimited) else 400  # RFC 6585 §4; the draft is shown again
    finally:
        await form.close()  # the parser's spooled copies of the uploads
    owned = sorted(await svc.resolver.owned_addresses(user))
    folders = await folder_tree(svc, user)
    d.attachments = []
    carried = [(k, k.rsplit(":", 1)[-1], 0) for k in keep]
    return render(
        request,
        "compose.html",
        status=status,
        folders=folders,
        current=None,
        d=d,
        owned=owned,
        carried=carried,
        draft_uid=draft_uid,
        error=error,
    )


# ------------------------------------------------------------------ live updates
async def events(request: Request) -> Response:
    """Server-sent events (HTML Living Standard §9.2) fed by the store's change feed."""
    user = await require_user(request)
    st = state(request)
    session: WebSession = request.state.session

    async def stream() -> AsyncIterator[str]:
        feed = st.svc.store.subscribe(user.id).__aiter__()
        closing = asyncio.ensure_future(st.closing.wait())
        nxt: asyncio.Future[Any] | None = None
        try:
            yield "retry: 3000\n: connected\n\n"
            while not st.closing.is_set():
                if nxt is None:
                    nxt = asyncio.ensure_future(feed.__anext__())
                done, _ = await asyncio.wait(
                    {nxt, closing}, timeout=SSE_HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
                )
                if nxt in done:
                    ch = nxt.result()
                    nxt = None
                    data = json.dumps({"mailbox": ch.mailbox_id, "kind": ch.kind})
                    yield f"event: change\ndata: {data}\n\n"
                elif not done:
                    if await st.svc.store.get_web_session(session.id_hash, time.time()) is None:
                        break  # issue 19: logged out or revoked meanwhile (noticed within SSE_HEARTBEAT)
                    yield ": ping\n\n"
        finally:
            closing.cancel()
            if nxt is not None:
                nxt.cancel()
            aclose = getattr(feed, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except (RuntimeError, StopAsyncIteration):
                    pass

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


__all__ = ["summarize"]
