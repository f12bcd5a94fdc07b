"""Mailbox access-control lists (RFC 4314), the rules written once over the `Tx` primitives.

RFCs: RFC 4314 §2 (identifiers, ``anyone``), §2.1 (the rights ``lrswipkxtea``), §2.1.1 (the
obsolete ``c`` and ``d`` rights under ``RIGHTS=texk``), §3.1 (SETACL ``+``/``-`` modifiers),
§2.2 (rights always granted to the owner).

Model:
- An entry is (mailbox id, identifier, rights). An identifier is an account address, the
  special ``anyone`` (every authenticated user), or ``anyone@<domain>`` — a Mailhouse extension
  meaning every account of that domain (Dovecot calls it a group; we keep it in the identifier
  space so GETACL shows it as it was set).
- The owner of a mailbox holds every right; it is implicit and never stored, so an owner cannot
  lock themself out (RFC 4314 §2: "the server MAY ... implicitly grant" owner rights). Another
  account's rights are the union of the entries that name it (RFC 4314 §2: no negative rights
  are supported; ``-identifier`` is refused).
- Rights are stored normalised: each right once, in ``lrswipkxtea`` order, obsolete letters
  mapped (§2.1.1, as RIGHTS=texk servers do): ``c`` → ``k`` + ``x``, ``d`` → ``t`` + ``e``.
  Responses add ``c`` when ``k`` or ``x`` is held and ``d`` when ``t`` or ``e`` is (`with_obsolete`),
  so an RFC 2086 client sees the rights it knows.
- An entry left with no rights is deleted; entries go with their mailbox (`store/mail.py`
  `delete_mailbox`) and entries naming an account go with the account (`store/directory.py`).
- ``\\Seen`` is per user on shared mailboxes: the message's flag is the owner's; every other
  reader's seen UIDs are rows of their own (`set_seen`), gone with the mailbox or the reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailhouse.store.api import Account, AclEntry, Mailbox, SharedMailbox
from mailhouse.store.backend import Tx

RIGHTS = "lrswipkxtea"  # RFC 4314 §2.1, in the order we print them
ALL_RIGHTS = RIGHTS
OBSOLETE = {"c": "kx", "d": "te"}  # RFC 4314 §2.1.1 (RIGHTS=texk)
ANYONE = "anyone"  # RFC 4314 §2: the universal identity
MAX_IDENTIFIER = 320  # an address (RFC 5321 §4.5.3.1: 64 + 1 + 255) with room for "anyone@"
NO_LOGIN = "!shared"  # the password hash of a shared-mailbox account: no hash format, no login


def is_shared_account(account: Account) -> bool:
    """A shared mailbox (``support@``): an account nobody logs in to, reached through its ACL."""
    return account.password_hash == NO_LOGIN


class AclError(ValueError):
    """An unknown right, a malformed or unsupported identifier (IMAP answers ``BAD``/``NO``)."""


def normalise(rights: Iterable[str]) -> str:
    """RIGHTS as stored: obsolete letters mapped, each right once, in ``lrswipkxtea`` order;
    `AclError` on a letter that is not a right (RFC 4314 §3.1: "unrecognized right")."""
    got: set[str] = set()
    for ch in rights:
        if ch in OBSOLETE:
            got.update(OBSOLETE[ch])  # RFC 4314 §2.1.1: c and d stand for their new rights
        elif ch in RIGHTS:
            got.add(ch)
        else:
            raise AclError(f"unknown right {ch!r}")
    return "".join(r for r in RIGHTS if r in got)


def with_obsolete(rights: str) -> str:
    """RIGHTS as sent to clients: plus ``c`` and ``d`` where their new rights are held (§2.1.1)."""
    out = rights
    if "k" in rights or "x" in rights:
        out += "c"
    if "t" in rights or "e" in rights:
        out += "d"
    return out


def apply_mod(current: str, mod: str) -> str:
    """The rights after SETACL's MOD on CURRENT (RFC 4314 §3.1: ``+`` adds, ``-`` removes, else
    replaces)."""
    if mod.startswith("+"):
        return normalise(current + normalise(mod[1:]))
    if mod.startswith("-"):
        gone = set(normalise(mod[1:]))
        return "".join(r for r in current if r not in gone)
    return normalise(mod)


def check_identifier(identifier: str) -> str:
    """The canonical identifier (addresses and ``anyone`` lower-cased) or `AclError`."""
    ident = identifier.strip().lower()
    if not ident or len(ident) > MAX_IDENTIFIER or any(c.isspace() or ord(c) < 32 for c in ident):
        raise AclError("invalid identifier")
    if ident.startswith("-"):
        raise AclError("negative rights are not supported")  # RFC 4314 §2: servers MAY refuse them
    if ident == ANYONE:
        return ident
    local, at, domain = ident.rpartition("@")
    if not at or not local or not domain or "/" in ident:
        raise AclError("an identifier is an address, anyone, or anyone@domain")
    return ident


def identifiers_for(address: str) -> tuple[str, ...]:
    """The identifiers whose entries apply to the account ADDRESS (RFC 4314 §2)."""
    addr = address.lower()
    return (addr, f"{ANYONE}@{addr.rpartition('@')[2]}", ANYONE)


def effective(address: str, entries: Iterable[tuple[str, str]]) -> str:
    """The union of the rights of those ENTRIES (identifier, rights) that apply to ADDRESS."""
    mine = set(identifiers_for(address))
    got = "".join(r for ident, r in entries if ident in mine)
    return normalise(got)


# ---------------------------------------------------------------------------- rules


async def get_acl(tx: Tx, mailbox_id: int) -> list[AclEntry]:
    return [AclEntry(i, r) for i, r in await tx.acl(mailbox_id)]


async def set_acl(tx: Tx, mailbox_id: int, identifier: str, mod: str) -> str:
    ident = check_identifier(identifier)
    current = dict(await tx.acl(mailbox_id)).get(ident, "")
    new = apply_mod(current, mod)
    await tx.set_acl(mailbox_id, ident, new or None)  # no rights left: no entry
    return new


async def delete_acl(tx: Tx, mailbox_id: int, identifier: str) -> bool:
    return await tx.set_acl(mailbox_id, check_identifier(identifier), None)


async def my_rights(tx: Tx, account: Account, mailbox: Mailbox) -> str:
    if mailbox.account_id == account.id:
        return ALL_RIGHTS  # RFC 4314 §2.2: the owner's rights are implicit
    return effective(account.address, await tx.acl(mailbox.id))


async def set_seen(tx: Tx, account_id: int, mailbox_id: int, uids: Sequence[int], seen: bool) -> None:
    """A reader's own \\Seen on another account's mailbox (the owner's is the message flag)."""
    if uids:
        await tx.set_seen(mailbox_id, account_id, sorted(set(uids)), seen)


async def shared_with(tx: Tx, account: Account) -> list[SharedMailbox]:
    """Other accounts' mailboxes on which ACCOUNT holds ``l`` (RFC 4314 §4: LIST needs it)."""
    rows = await tx.acl_for(identifiers_for(account.address))
    by_box: dict[int, str] = {}
    for mid, _ident, rights in rows:
        by_box[mid] = by_box.get(mid, "") + rights
    out: list[SharedMailbox] = []
    owners: dict[int, str] = {}
    for mid, rights in sorted(by_box.items()):
        mb = await tx.mailbox_by_id(mid)
        if mb is None or mb.account_id == account.id:
            continue
        rights = normalise(rights)
        if "l" not in rights:
            continue
        if mb.account_id not in owners:
            owner = await tx.account_by_id(mb.account_id)
            if owner is None:
                continue
            owners[mb.account_id] = owner.address
        out.append(SharedMailbox(mb, owners[mb.account_id], rights))
    return out
