"""Admin pages (accounts with `is_admin` only; everyone else gets 403): domains, users,
aliases, quotas, shared mailboxes and folder rights (RFC 4314), the outbound queue, and per domain the DNS records to publish beside
what DNS answers now (dnspython, through `[dns] nameservers` when configured).

All changes go through `accounts.admin.Admin`, as the CLI's do, so validation (IDNA,
address syntax, password length) and side effects (DKIM keys) are the same.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.accounts import shared
from mailhouse.accounts.admin import MIN_PASSWORD, Admin, AdminError
from mailhouse.delivery.sendlimits import SendOverrides, get_overrides, set_overrides
from mailhouse.mailauth import dnscheck
from mailhouse.mailauth.dnsrecords import advice
from mailhouse.reports.views import load_dmarc, load_tls
from mailhouse.store.acl import is_shared_account
from mailhouse.store.api import AlreadyExists, Conflict, NotFound, StoreError
from mailhouse.web.common import checked_form, redirect, render, require_admin, state

log = logging.getLogger(__name__)

DNS_TIMEOUT = 3.0  # seconds per look-up; the page shows "no answer" rather than hang

# `?error=` carries one of these keys (URL-quoted), never free text: a crafted link cannot put
# words on the page
ERRORS = {
    "invalid name": "That is not a valid domain name or address.",
    "password too short": f"Password too short: at least {MIN_PASSWORD} characters.",
    "quota not a number": "Quota must be a whole number.",
    "domain not hosted": "That domain is not hosted here; add it first.",
    "already exists": "That already exists.",
    "not found": "No such domain, account, alias or queue entry.",
    "conflict": "That conflicts with what is stored.",
    "failed": "The change could not be made.",
    "share refused": "That sharing change was refused: check the folder, the identifier and the rights (lrswipkxtea).",
}


def error_key(e: Exception) -> str:
    """The `ERRORS` key for a refused change (the detail goes to the log)."""
    log.info("admin change refused: %s", e)
    text = str(e)
    if isinstance(e, shared.ShareError):
        return "share refused"
    if isinstance(e, AlreadyExists):
        return "already exists"
    if isinstance(e, NotFound) or (isinstance(e, AdminError) and text.startswith("no ")):
        return "not found"
    if isinstance(e, Conflict):
        return "conflict"
    if isinstance(e, AdminError):
        if text.startswith("password too short"):
            return "password too short"
        if text.startswith("quota"):
            return "quota not a number"
        if "is not hosted here" in text:
            return "domain not hosted"
        return "invalid name"
    return "failed"


def shown_error(request: Request) -> str | None:
    """The message for the page's `?error=` key; unknown keys show nothing."""
    return ERRORS.get(request.query_params.get("error", ""))


def _admin(request: Request) -> Admin:
    svc = state(request).svc
    return Admin(svc.store, svc.cfg.dkim_selector)


async def admin_home(request: Request) -> Response:
    user = await require_admin(request)
    request.state.user = user
    store = state(request).svc.store
    domains = []
    for d in await store.list_domains():
        domains.append((d, len(await store.list_accounts(d.name))))
    queue = await store.list()
    return render(
        request,
        "admin_home.html",
        domains=domains,
        queue_len=len(queue),
        error=shown_error(request),
    )


async def admin_domains_post(request: Request) -> Response:
    await require_admin(request)
    form = await checked_form(request)
    name = str(form.get("name", "")).strip()
    try:
        if form.get("action") == "add":
            d = await _admin(request).add_domain(name)
            return redirect(f"/admin/domain/{d.name}")
        if form.get("action") == "remove":
            await state(request).svc.store.remove_domain(name.lower().rstrip("."))
            return redirect("/admin")
    except (AdminError, StoreError) as e:
        return redirect("/admin?error=" + quote(error_key(e)))
    raise HTTPException(400, "unknown action")


async def dns_rows(request: Request, domain: str) -> list[dnscheck.Finding]:
    """The advised records next to what DNS answers now, compared by meaning (mailauth/dnscheck.py)."""
    svc = state(request).svc
    cfg = svc.cfg
    want = advice(cfg, domain, await svc.store.get_dkim_keys(domain))
    checker = dnscheck.Checker(
        dnscheck.async_resolver(cfg.dns_nameservers, DNS_TIMEOUT),
        cfg.hostname,
        cfg.dns_nameservers,
        cfg.source_addresses,
    )
    return await checker.check(domain, want)


REPORT_DAYS = 30  # the domain page summarises the DMARC / TLS-RPT reports of the last 30 days


async def admin_domain(request: Request) -> Response:
    user = await require_admin(request)
    request.state.user = user
    store = state(request).svc.store
    name = request.path_params["name"]
    d = await store.get_domain(name)
    if d is None:
        raise HTTPException(404, "no such domain")
    users = [
        (a, await store.usage(a.id), await get_overrides(store, a)) for a in await store.list_accounts(d.name)
    ]
    aliases = await store.list_aliases(d.name)
    shares = [f for a, _, _ in users for f in await shared.list_rights(store, a.address)]  # RFC 4314 ACLs
    return render(
        request,
        "admin_domain.html",
        domain=d,
        users=users,
        send_rate=state(request).svc.cfg.send_rate,  # the defaults, shown where no override is set
        recipients_per_day=state(request).svc.cfg.recipients_per_day,
        aliases=aliases,
        shares=shares,
        shared_accounts={a.address for a, _, _ in users if is_shared_account(a)},
        dns=await dns_rows(request, d.name),
        dmarc=await load_dmarc(store, d.name, REPORT_DAYS),  # issue 14 §2: reports received
        tlsrpt=await load_tls(store, d.name, REPORT_DAYS),
        error=shown_error(request),
    )


def _int(v: object) -> int:
    try:
        return max(0, int(str(v or "0")))
    except ValueError:
        raise AdminError("quota must be a whole number") from None


def _override(v: object) -> int | None:
    """A send-limit field: empty keeps the configured limit (None), else a whole number (0: none)."""
    return None if not str(v or "").strip() else _int(v)


async def admin_users_post(request: Request) -> Response:
    await require_admin(request)
    form = await checked_form(request)
    store = state(request).svc.store
    address = str(form.get("address", "")).strip().lower()
    domain = address.rpartition("@")[2]
    back = f"/admin/domain/{domain}" if domain else "/admin"
    action = form.get("action")
    try:
        if action == "add":
            await _admin(request).add_user(
                address,
                str(form.get("password", "")),
                quota_bytes=_int(form.get("quota_mb")) * 1024 * 1024,
                quota_messages=_int(form.get("quota_messages")),
                is_admin=form.get("is_admin") == "1",
            )
        elif action == "password":
            await _admin(request).set_password(address, str(form.get("password", "")))
        elif action == "quota":
            await store.set_quota(
                address, _int(form.get("quota_mb")) * 1024 * 1024, _int(form.get("quota_messages"))
            )
        elif action == "sendlimits":  # delivery/sendlimits.py: this account's own limits
            acc = await store.get_account(address)
            if acc is None:
                raise AdminError(f"no account {address}")
            rate, rcpts = _override(form.get("send_rate")), _override(form.get("recipients_per_day"))
            await set_overrides(store, acc, SendOverrides(rate, rcpts))
        elif action == "remove":
            await store.remove_account(address)
        else:
            raise HTTPException(400, "unknown action")
    except (AdminError, StoreError) as e:
        return redirect(f"{back}?error=" + quote(error_key(e)))
    return redirect(back)


async def admin_aliases_post(request: Request) -> Response:
    await require_admin(request)
    form = await checked_form(request)
    store = state(request).svc.store
    source = str(form.get("source", "")).strip().lower()
    dest = str(form.get("destination", "")).strip().lower()
    domain = source.rpartition("@")[2]
    back = f"/admin/domain/{domain}" if domain else "/admin"
    try:
        if form.get("action") == "add":
            await _admin(request).add_alias(source, dest)
        elif form.get("action") == "remove":
            await store.remove_alias(source, dest or None)
        else:
            raise HTTPException(400, "unknown action")
    except (AdminError, StoreError) as e:
        return redirect(f"{back}?error=" + quote(error_key(e)))
    return redirect(back)


async def admin_shares_post(request: Request) -> Response:
    """Shared mailboxes and folder rights (`accounts.shared`, as `mailhouse mailbox share`)."""
    await require_admin(request)
    form = await checked_form(request)
    store = state(request).svc.store
    owner = str(form.get("owner", "")).strip().lower()
    folder = str(form.get("folder", "")).strip() or "INBOX"
    ident = str(form.get("identifier", "")).strip()
    domain = owner.rpartition("@")[2]
    back = f"/admin/domain/{domain}" if domain else "/admin"
    try:
        if form.get("action") == "create":
            await shared.create_shared_mailbox(store, owner)
        elif form.get("action") == "set":
            await shared.set_rights(store, owner, folder, ident, str(form.get("rights", "")).strip())
        elif form.get("action") == "remove":
            await shared.remove_rights(store, owner, folder, ident)
        else:
            raise HTTPException(400, "unknown action")
    except (shared.ShareError, StoreError) as e:
        return redirect(f"{back}?error=" + quote(error_key(e)))
    return redirect(back)


async def admin_queue(request: Request) -> Response:
    user = await require_admin(request)
    request.state.user = user
    entries = sorted(await state(request).svc.store.list(), key=lambda e: e.created)
    return render(request, "admin_queue.html", entries=entries, now=time.time(), error=shown_error(request))


async def admin_queue_post(request: Request) -> Response:
    await require_admin(request)
    form = await checked_form(request)
    svc = state(request).svc
    qid = str(form.get("id", "")).strip().upper()
    try:
        if form.get("action") == "retry":
            now = time.time()
            entries = [await svc.store.get(qid)] if qid else await svc.store.list()
            for e in entries:
                if e is None:
                    raise NotFound(f"no queue entry {qid}")
                if e.lease_until > now:
                    continue  # being delivered right now (as `mailhouse queue retry`)
                e.next_attempt = now
                await svc.store.update(e)
            svc.outbound.wake()
        elif form.get("action") == "delete":
            await svc.store.remove(qid)
        else:
            raise HTTPException(400, "unknown action")
    except StoreError as e:
        return redirect("/admin/queue?error=" + quote(error_key(e)))
    return redirect("/admin/queue")
