"""Address-book rules (contacts, groups, recipients collected from sent mail), written once over
both backends.

A contact carries the vCard 4.0 fields the webmail uses (RFC 6350: UID, FN, EMAIL, NOTE,
CATEGORIES); a group is a CATEGORIES value (RFC 6350 §6.7.1) shared by its contacts, so groups
need no table of their own and travel in vCards.

Invariants:
- Every stored address passes the SMTP path grammar (RFC 5321 §4.1.2, SMTPUTF8 allowed) and is
  kept as typed, its domain lower-cased; a contact has 1..MAX_EMAILS distinct addresses.
- Names, notes and group names are one line (notes: CR/LF kept as LF) and bounded (the limits
  below), so a row is small and an export cannot grow without bound.
- An account has at most MAX_CONTACTS contacts and MAX_COLLECTED collected recipients; the
  collected ones used least recently are dropped first, in the same transaction as the insert.
- Suggestions match a prefix of an address, or of any word of a name or group name,
  case-insensitively; contacts come first, then groups, then collected recipients not already
  in the address book, most used first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from mailhouse.proto.smtp_address import parse_path
from mailhouse.store.api import Collected, Contact, ContactError, Suggestion, SuggestionKind
from mailhouse.store.backend import ContactRow, Tx

MAX_CONTACTS = 5000  # per account: a personal address book; bounds list, export and suggestion scans
MAX_COLLECTED = 1000  # per account: recipients remembered from sent mail, least recently used dropped
MAX_EMAILS = 20  # addresses per contact
MAX_GROUPS = 20  # groups per contact
MAX_NAME = 200  # characters of a name or a group name
MAX_NOTES = 4000  # characters of a contact's notes
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets
MAX_SUGGESTIONS = 50  # per query, whatever the caller asks


def _line(value: str, limit: int) -> str:
    return " ".join(value.replace("\0", " ").split())[:limit]


def normal_address(addr: str) -> str:
    """ADDR checked (RFC 5321 §4.1.2) with its domain lower-cased; raises ContactError."""
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or len(addr) > MAX_ADDRESS or parse_path(addr.encode(), smtputf8=True) is None:
        raise ContactError(f"not an e-mail address: {addr[:80]!r}")
    return f"{local}@{domain.lower()}"  # RFC 5321 §2.4: the local part is case-sensitive, the domain not


def normalise(contact: Contact) -> Contact:
    """CONTACT as stored: fields trimmed and checked against the limits; raises ContactError."""
    emails = list(dict.fromkeys(normal_address(e) for e in contact.emails if e.strip()))
    if not emails:
        raise ContactError("a contact needs at least one e-mail address")
    if len(emails) > MAX_EMAILS:
        raise ContactError(f"at most {MAX_EMAILS} addresses per contact")
    groups = list(dict.fromkeys(g for g in (_line(g, MAX_NAME) for g in contact.groups) if g))
    if len(groups) > MAX_GROUPS:
        raise ContactError(f"at most {MAX_GROUPS} groups per contact")
    if any("," in g or "@" in g for g in groups):
        raise ContactError("a group name cannot contain ',' or '@'")  # it is typed in To/Cc/Bcc
    notes = contact.notes.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    if len(notes) > MAX_NOTES:
        raise ContactError(f"notes are limited to {MAX_NOTES} characters")
    return replace(
        contact,
        uid=_line(contact.uid, MAX_NAME),
        name=_line(contact.name, MAX_NAME) or emails[0],
        emails=tuple(emails),
        groups=tuple(groups),
        notes=notes.strip(),
    )


def _row(c: Contact) -> ContactRow:
    return (c.uid, c.name, "\n".join(c.emails), c.notes, "\n".join(c.groups), c.updated)


def _contact(r: ContactRow) -> Contact:
    uid, name, emails, notes, groups, updated = r
    return Contact(
        uid, name, tuple(emails.split("\n")), notes, tuple(g for g in groups.split("\n") if g), updated
    )


async def put_contact(tx: Tx, account_id: int, contact: Contact, now: float) -> Contact:
    c = normalise(contact)
    c = replace(c, uid=c.uid or f"urn:uuid:{uuid.uuid4()}", updated=now)  # RFC 6350 §6.7.6
    if (
        await tx.contact_row(account_id, c.uid) is None
        and await tx.count_contacts(account_id) >= MAX_CONTACTS
    ):
        raise ContactError(f"the address book is full ({MAX_CONTACTS} contacts)")
    await tx.put_contact_row(account_id, _row(c))
    return c


async def get_contact(tx: Tx, account_id: int, uid: str) -> Contact | None:
    r = await tx.contact_row(account_id, uid)
    return None if r is None else _contact(r)


async def list_contacts(tx: Tx, account_id: int) -> list[Contact]:
    return sorted(
        (_contact(r) for r in await tx.contact_rows(account_id)), key=lambda c: (c.name.casefold(), c.uid)
    )


async def collect(tx: Tx, account_id: int, rcpts: Sequence[tuple[str, str]], now: float) -> None:
    rows: dict[str, str] = {}
    for addr, name in rcpts:
        try:
            rows.setdefault(normal_address(addr).lower(), _line(name, MAX_NAME))
        except ContactError:
            continue  # only what was accepted for sending is offered again
    if rows:
        await tx.add_collected(account_id, sorted(rows.items()), now)
        await tx.trim_collected(account_id, MAX_COLLECTED)


async def collected(tx: Tx, account_id: int) -> list[Collected]:
    return [Collected(a, n, t, k) for a, n, t, k in await tx.collected_rows(account_id)]


def _matches(prefix: str, *texts: str) -> bool:
    return any(w.startswith(prefix) for t in texts for w in [t.casefold(), *t.casefold().split()])


async def suggest(tx: Tx, account_id: int, prefix: str, limit: int) -> list[Suggestion]:
    p = prefix.strip().casefold()
    limit = max(0, min(limit, MAX_SUGGESTIONS))
    if not p or not limit:
        return []
    out: list[Suggestion] = []
    known: set[str] = set()
    groups: dict[str, str] = {}
    for c in await list_contacts(tx, account_id):
        for e in c.emails:
            known.add(e.lower())
            if _matches(p, c.name, e):
                out.append(Suggestion(SuggestionKind.CONTACT, c.name, e))
        for g in c.groups:
            if _matches(p, g):
                groups.setdefault(g.casefold(), g)
    out += [Suggestion(SuggestionKind.GROUP, g, "") for _, g in sorted(groups.items())]
    ranked = sorted(await collected(tx, account_id), key=lambda r: (-r.count, -r.last_used, r.address))
    out += [
        Suggestion(SuggestionKind.COLLECTED, r.name, r.address)
        for r in ranked
        if r.address not in known and _matches(p, r.name, r.address)
    ]
    return out[:limit]


async def group_members(tx: Tx, account_id: int, group: str) -> list[tuple[str, str]] | None:
    g = _line(group, MAX_NAME).casefold()
    members = [c for c in await list_contacts(tx, account_id) if g in (x.casefold() for x in c.groups)]
    if not members:
        return None
    return [(c.name, c.emails[0]) for c in members]  # a member's first address is the one mailed
