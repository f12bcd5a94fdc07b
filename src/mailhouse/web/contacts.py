"""The webmail's address book: contacts pages, vCard import/export, recipient autocomplete, and
the two compose hooks (groups expanded in To/Cc/Bcc, recipients collected after sending).

Rules and limits are in `store/contacts.py`, the vCard format in `message/vcard.py`.

Invariants:
- Every handler works on the logged-in user's own address book only: a UID that is not theirs
  answers 404, never another user's contact.
- Changes are POSTed forms with the CSRF token (`common.checked_form`); the suggestion endpoint
  is a GET that still wants the session's CSRF token in `X-CSRF-Token` (as the fetches of
  `static/app.js` send it), so only the webmail's own pages can read it.
- Suggestions are bounded (SUGGEST_LIMIT) and so is the prefix (MAX_PREFIX).
"""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailhouse.message import vcard
from mailhouse.store.api import Account, Contact, ContactError
from mailhouse.web import security
from mailhouse.web.common import checked_form, folder_tree, redirect, render, require_user, state

if TYPE_CHECKING:
    from mailhouse.services import Services
    from mailhouse.web.send import Draft

SUGGEST_LIMIT = 8  # suggestions per keystroke: what a dropdown shows without scrolling
MAX_PREFIX = 100  # characters of a typed prefix that are looked up
MAX_SEARCH = 200  # characters of the list's search box


async def _page(request: Request, user: Account, template: str, status: int = 200, **ctx: object) -> Response:
    request.state.user = user
    folders = await folder_tree(state(request).svc, user)
    return render(request, template, status=status, folders=folders, current=None, **ctx)


def _filter(contacts: list[Contact], q: str) -> list[Contact]:
    q = q.casefold()
    if not q:
        return contacts
    return [c for c in contacts if any(q in t.casefold() for t in (c.name, c.notes, *c.emails, *c.groups))]


async def contacts_page(
    request: Request, *, status: int = 200, error: str = "", notice: str = ""
) -> Response:
    user = await require_user(request)
    q = request.query_params.get("q", "")[:MAX_SEARCH].strip()
    everyone = await state(request).svc.store.list_contacts(user.id)
    groups = sorted({g for c in everyone for g in c.groups}, key=str.casefold)
    name, addr = email.utils.parseaddr(request.query_params.get("from", "")[:1000])  # "add to contacts"
    new = Contact("", name, (addr,) if addr else ())
    return await _page(
        request,
        user,
        "contacts.html",
        status,
        contacts=_filter(everyone, q),
        total=len(everyone),
        groups=groups,
        q=q,
        new=new,
        error=error,
        notice=notice or ("Saved." if request.query_params.get("saved") else ""),
    )


async def _own(request: Request, user: Account, uid: str) -> Contact:
    c = await state(request).svc.store.get_contact(user.id, uid) if uid else None
    if c is None:
        raise HTTPException(404, "no such contact")
    return c


async def edit_page(request: Request) -> Response:
    user = await require_user(request)
    c = await _own(request, user, request.query_params.get("uid", ""))
    return await _page(request, user, "contact_edit.html", contact=c, error="")


def _lines(value: object, sep: str) -> tuple[str, ...]:
    text = value if isinstance(value, str) else ""
    return tuple(x.strip() for x in text.replace("\n", sep).split(sep) if x.strip())


async def save(request: Request) -> Response:
    user = await require_user(request)
    form = await checked_form(request)
    store = state(request).svc.store
    uid = str(form.get("uid", ""))
    if uid:
        await _own(request, user, uid)  # 404 for a contact that is not the user's
    c = Contact(
        uid,
        str(form.get("name", "")),
        _lines(form.get("emails"), ","),
        str(form.get("notes", "")),
        _lines(form.get("groups"), ","),
    )
    try:
        await store.put_contact(user.id, c)
    except ContactError as e:
        if uid:
            return await _page(request, user, "contact_edit.html", 400, contact=c, error=str(e))
        return await contacts_page(request, status=400, error=str(e))
    return redirect("/contacts?saved=1")


async def delete(request: Request) -> Response:
    user = await require_user(request)
    form = await checked_form(request)
    if not await state(request).svc.store.delete_contact(user.id, str(form.get("uid", ""))):
        raise HTTPException(404, "no such contact")
    return redirect("/contacts")


async def export(request: Request) -> Response:
    user = await require_user(request)
    cards = [
        vcard.Card(c.uid, c.name, list(c.emails), c.notes, list(c.groups))
        for c in await state(request).svc.store.list_contacts(user.id)
    ]
    return Response(
        vcard.write(cards),
        media_type="text/vcard; charset=utf-8",  # RFC 6350 §10.1
        headers={"content-disposition": 'attachment; filename="contacts.vcf"'},
    )


async def import_cards(request: Request) -> Response:
    user = await require_user(request)
    form = await checked_form(request, max_files=1, max_part_size=vcard.MAX_BYTES + 1)
    try:
        up = form.get("file")
        if not isinstance(up, UploadFile):
            return await contacts_page(request, status=400, error="Choose a .vcf file to import.")
        data = await up.read(vcard.MAX_BYTES + 1)
    finally:
        await form.close()
    try:
        cards = vcard.read(data)
    except vcard.VCardError as e:
        return await contacts_page(request, status=400, error=f"Nothing imported: {e}.")
    store = state(request).svc.store
    done, skipped, errors = 0, 0, []
    for card in cards:
        if not card.emails:
            skipped += 1  # phone-only cards: nothing to mail
            continue
        try:
            await store.put_contact(
                user.id, Contact(card.uid, card.name, tuple(card.emails), card.notes, tuple(card.groups))
            )
            done += 1
        except ContactError as e:
            errors.append(f"card at line {card.line}: {e}")
    notice = (
        f"Imported {done} contact(s)"
        + (f", skipped {skipped} without an e-mail address" if skipped else "")
        + "."
    )
    if errors:
        shown = "; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
        return await contacts_page(request, status=400, notice=notice, error=f"Not imported: {shown}.")
    return await contacts_page(request, notice=notice)


async def suggest(request: Request) -> Response:
    """JSON suggestions for a To/Cc/Bcc prefix: ``{"items": [{"kind", "name", "address", "label"}]}``."""
    user = await require_user(request)
    security.check_token(str(request.state.csrf), request.headers.get("x-csrf-token"))
    prefix = request.query_params.get("q", "")[:MAX_PREFIX]
    found = await state(request).svc.store.suggest_recipients(user.id, prefix, SUGGEST_LIMIT)
    items = [
        {
            "kind": s.kind.value,
            "name": s.name,
            "address": s.address,
            # what goes into the field: "Name <addr>", or the group's name (expanded when sent)
            "value": email.utils.formataddr((s.name, s.address)) if s.address else s.name,
        }
        for s in found
    ]
    return JSONResponse({"items": items}, headers={"cache-control": "no-store"})


# ------------------------------------------------------------------ compose hooks
def split_entries(value: str) -> list[str]:
    """A To/Cc/Bcc field as typed, split at commas and semicolons outside quotes and <...>
    (RFC 5322 §3.4 address-list, leniently: a bare group name is one entry)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = angle = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif ch in "<>" and not quoted:
            angle = ch == "<"
        elif ch in ",;" and not quoted and not angle:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [e for e in out if e]


async def expand_groups(svc: Services, user: Account, d: Draft) -> None:
    """Group names typed in To/Cc/Bcc (an entry without '@' naming a group) become the group's
    members, each as "Name <addr>"; anything else is left for `send.parse_recipients` to judge."""
    for attr in ("to", "cc", "bcc"):
        entries = split_entries(getattr(d, attr))
        if all("@" in e for e in entries):
            continue
        out = []
        for e in entries:
            members = None if "@" in e else await svc.store.group_members(user.id, e)
            out += [e] if members is None else [email.utils.formataddr(m) for m in members]
        setattr(d, attr, ", ".join(out))


async def collect_sent(svc: Services, user: Account, d: Draft) -> None:
    """Remember the recipients of a message just sent (autocomplete's "collected" addresses)."""
    rcpts = email.utils.getaddresses([v.replace(";", ",") for v in (d.to, d.cc, d.bcc)])
    await svc.store.collect_recipients(user.id, [(a, n) for n, a in rcpts if a], time.time())
