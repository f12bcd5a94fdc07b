"""METADATA: GETMETADATA and SETMETADATA (RFC 5464), server and mailbox annotations.

Entries are paths beginning ``/private/`` or ``/shared/`` (RFC 5464 §3.2), compared
case-insensitively (stored lower-case). Server metadata has mailbox ``""``; mailbox metadata
is keyed by the mailbox *id* and UIDVALIDITY (``"#<id>.<uidvalidity>"`` in the store's
``mailbox`` column), so it follows
RENAME and dies with DELETE (a re-created mailbox has a new id) without the session doing
anything.

Mailhouse has no shared mailboxes (no ACL), so ``/shared`` entries are per account, like
``/private`` ones, except these server-provided entries:

* ``/shared/admin`` on the server (RFC 5464 §3.2.1.2): ``mailto:postmaster@<domain>``,
  read-only;
* ``/shared/comment`` on the server (§3.2.1.1): settable by administrators only;
* ``/private/specialuse`` on a mailbox (RFC 6154 §4): the mailbox's special-use flag,
  read-only here (CREATE with USE sets it).

``/private/vendor/mailhouse/`` is reserved for the server's own data (the URLAUTH mailbox
access key, the entry index): never listed, never settable by a client.

Limits (named below): value size :data:`MAX_VALUE_SIZE` (``NO [METADATA MAXSIZE n]``) and
entries per mailbox or per server :data:`MAX_ENTRIES` (``NO [METADATA TOOMANY]``), RFC 5464
§4.3. ``MAXSIZE`` in GETMETADATA omits longer values and answers
``OK [METADATA LONGENTRIES n]`` (§4.2.1).

The store API reads and writes one entry at a time, so DEPTH needs a list of the entries
that exist: it is kept as a JSON index entry (:data:`INDEX_KEY`) per mailbox, updated under a
lock per account and scope from the node's :class:`MetadataLocks` (``node.ImapNode``). Values
are bytes; those that are valid UTF-8 are stored as text, others base64 (the index records
which).

Usage by the session (errors are ``errors.No`` / ``errors.Bad``)::

    reply = await metadata.getmetadata(store, account, cmd.args, utf8=...)
    reply = await metadata.setmetadata(store, account, cmd.args, locks=node.metadata_locks)
    write(reply.data + tagged(tag, "OK", reply.text, reply.code))

Other modules use :func:`get_entry` / :func:`set_entry` (e.g. ``urlauth`` for its keys).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import weakref
from dataclasses import dataclass

from mailhouse.imapserver.errors import Bad, No
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import GetMetadata, SetMetadata
from mailhouse.store.api import Account, Mailbox, Store

__all__ = [
    "CAPABILITIES",
    "INDEX_KEY",
    "MAX_ENTRIES",
    "MAX_VALUE_SIZE",
    "MetadataLocks",
    "RESERVED_PREFIX",
    "Reply",
    "entries",
    "get_entry",
    "getmetadata",
    "mailbox_scope",
    "set_entry",
    "setmetadata",
]

# RFC 5464 §1: METADATA implies METADATA-SERVER.
CAPABILITIES = ("METADATA",)
# Limit: one entry value. 64 KiB is plenty for comments, client settings, Sieve-ish blobs, and
# keeps a GETMETADATA DEPTH infinity answer bounded (MAX_ENTRIES x this).
MAX_VALUE_SIZE = 64 * 1024
# Limit: entries per mailbox (or per server scope) per account: bounds store rows per account.
MAX_ENTRIES = 256
# Limit: entry name length (RFC 5464 does not set one; clients use short paths).
MAX_ENTRY_NAME = 512
RESERVED_PREFIX = "/private/vendor/mailhouse/"
INDEX_KEY = RESERVED_PREFIX + "entries"

# RFC 5464 §3.2 / §5: entry = "/" component *("/" component); no "*" "%" (list wildcards),
# no control characters, no empty component, no trailing "/".
_ENTRY_RE = re.compile(r"^(?:/[^\x00-\x1f\x7f/*%]+)+$")


@dataclass(frozen=True, slots=True)
class Reply:
    """Untagged ``data`` to send, then ``tag OK [code] text``."""

    data: bytes
    text: str = "Completed"
    code: str | None = None


class MetadataLocks:
    """One node's locks over the entry index: one per (account, scope), held while the index is
    read and rewritten (the store API writes one entry at a time). Weak values: a lock lives
    while a writer holds or waits for it."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def __call__(self, account_id: int, scope: str) -> asyncio.Lock:
        key = (account_id, scope)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock


def mailbox_scope(mailbox: Mailbox | None) -> str:
    """The store's ``mailbox`` column for server (None → ``""``) or mailbox metadata."""
    # id *and* UIDVALIDITY: ids can be reused after DELETE, UIDVALIDITY cannot (store contract)
    return "" if mailbox is None else f"#{mailbox.id}.{mailbox.uidvalidity}"


def _check_entry(name: str, *, top_ok: bool = False) -> str:
    e = name.lower()
    if len(e) > MAX_ENTRY_NAME or not _ENTRY_RE.match(e):
        raise Bad("Invalid entry name")
    if top_ok and e in ("/private", "/shared"):  # GETMETADATA of a whole tree with DEPTH
        return e
    if not (e.startswith("/private/") or e.startswith("/shared/")):
        raise Bad("Entry names start with /private/ or /shared/")  # RFC 5464 §3.2
    return e


async def _index(store: Store, account_id: int, scope: str) -> dict[str, str]:
    raw = await store.get_metadata(account_id, scope, INDEX_KEY)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _count(index: dict[str, str]) -> int:
    """Client-visible entries (reserved ones do not count against the limit)."""
    return sum(1 for k in index if not k.startswith(RESERVED_PREFIX))


async def get_entry(store: Store, account_id: int, scope: str, entry: str) -> bytes | None:
    """One stored value (any entry, reserved ones included), or None."""
    raw = await store.get_metadata(account_id, scope, entry)
    if raw is None:
        return None
    if raw.startswith("b64:"):
        return base64.b64decode(raw[4:])
    return raw.removeprefix("txt:").encode("utf-8")


async def entries(store: Store, account_id: int, scope: str) -> dict[str, str]:
    """Every client-visible entry of a scope with its stored value (NOTIFY compares these
    snapshots to name the entries that changed, RFC 5465 §5.6-7)."""
    out: dict[str, str] = {}
    for e in sorted(await _index(store, account_id, scope)):
        if e.startswith(RESERVED_PREFIX):
            continue
        raw = await store.get_metadata(account_id, scope, e)
        if raw is not None:
            out[e] = raw
    return out


def _encode(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(value).decode("ascii")
    return "txt:" + text


async def set_entry(
    store: Store,
    account_id: int,
    scope: str,
    entry: str,
    value: bytes | None,
    *,
    max_entries: int | None = None,
    locks: MetadataLocks,
) -> None:
    """Store or remove (``None``) one entry and keep the index; ``TOOMANY`` past the limit.

    ``locks`` are the node's (``ImapNode.metadata_locks``): they serialise index updates of
    the node's sessions."""
    async with locks(account_id, scope):
        index = await _index(store, account_id, scope)
        if (
            value is not None
            and entry not in index
            and max_entries is not None
            and _count(index) >= max_entries
        ):
            raise No("Too many metadata entries", "METADATA TOOMANY")  # RFC 5464 §4.3
        await store.set_metadata(account_id, scope, entry, None if value is None else _encode(value))
        changed = False
        if value is None and entry in index:
            del index[entry]
            changed = True
        elif value is not None and entry not in index:
            index[entry] = "v"
            changed = True
        if changed:
            await store.set_metadata(account_id, scope, INDEX_KEY, json.dumps(index, sort_keys=True))


async def _mailbox(store: Store, account: Account, name: str) -> Mailbox | None:
    if name == "":
        return None
    box = await store.get_mailbox(account.id, "INBOX" if name.upper() == "INBOX" else name)
    if box is None:
        raise No("No such mailbox", "NONEXISTENT")  # RFC 5530 §3
    return box


def _server_entries(account: Account) -> dict[str, bytes]:
    domain = account.address.rpartition("@")[2]
    return {"/shared/admin": f"mailto:postmaster@{domain}".encode()}  # RFC 5464 §3.2.1.2


def _mailbox_entries(box: Mailbox) -> dict[str, bytes]:
    if box.special_use:
        return {"/private/specialuse": box.special_use.encode()}  # RFC 6154 §4
    return {}


def _under(entry: str, name: str, depth: str) -> bool:
    """Is ``entry`` selected by ``name`` with DEPTH ``depth`` (RFC 5464 §4.2.2)?"""
    if entry == name:
        return True
    if depth == "0" or not entry.startswith(name + "/"):
        return False
    return depth == "INFINITY" or "/" not in entry[len(name) + 1 :]


async def getmetadata(store: Store, account: Account, cmd: GetMetadata, *, utf8: bool = False) -> Reply:
    """GETMETADATA [(MAXSIZE n) (DEPTH d)] mailbox (entries) (RFC 5464 §4.2).

    Requested entries that do not exist are returned with NIL (RFC 5464 §4.4.1, as Dovecot);
    descendants found by DEPTH only when they exist."""
    box = await _mailbox(store, account, cmd.mailbox)
    scope = mailbox_scope(box)
    depth = (cmd.depth or "0").upper()
    if depth not in ("0", "1", "INFINITY"):
        raise Bad("Bad DEPTH")
    names = [_check_entry(e, top_ok=True) for e in cmd.entries]
    builtin = _server_entries(account) if box is None else _mailbox_entries(box)
    index = await _index(store, account.id, scope)
    existing = sorted(set(index) | set(builtin))
    values: dict[str, bytes | None] = {}
    for name in names:
        if name.startswith(RESERVED_PREFIX) or name + "/" == RESERVED_PREFIX:
            values.setdefault(name, None)  # RFC 5464 §4.2: invisible, reads as absent
            continue
        if name not in values:
            values[name] = builtin.get(name)
            if values[name] is None and name in index:
                values[name] = await get_entry(store, account.id, scope, name)
        for e in existing:
            if e != name and not e.startswith(RESERVED_PREFIX) and e not in values and _under(e, name, depth):
                v = builtin.get(e)
                if v is None:
                    v = await get_entry(store, account.id, scope, e)
                if v is not None:
                    values[e] = v
    longest = 0
    items: list[response.Value] = []
    for e, v in values.items():
        if v is not None and cmd.maxsize is not None and len(v) > cmd.maxsize:
            longest = max(longest, len(v))  # RFC 5464 §4.2.1: omitted, reported in LONGENTRIES
            continue
        items += [response.AString(e), v]
    data = b""
    if items:
        data = (
            b"* METADATA "
            + response.mailbox(cmd.mailbox, utf8=utf8)
            + b" "
            + response.encode_value(items, utf8=utf8)
            + b"\r\n"
        )
    code = f"METADATA LONGENTRIES {longest}" if longest else None
    return Reply(data, "GETMETADATA completed", code)


async def setmetadata(store: Store, account: Account, cmd: SetMetadata, *, locks: MetadataLocks) -> Reply:
    """SETMETADATA mailbox (entry value ...) (RFC 5464 §4.3); NIL removes an entry.

    All entries are checked before any is written, so a refused command changes nothing
    (except when the store fails half-way)."""
    box = await _mailbox(store, account, cmd.mailbox)
    scope = mailbox_scope(box)
    builtin = _server_entries(account) if box is None else _mailbox_entries(box)
    plan: list[tuple[str, bytes | None]] = []
    for name, value in cmd.entries:
        e = _check_entry(name)
        if e.startswith(RESERVED_PREFIX) or e in builtin or e == "/private/specialuse":
            raise No(f"Entry {e[:80]} is read-only", "NOPERM")
        if box is None and e.startswith("/shared/") and not account.is_admin:
            raise No("Only administrators may set shared server metadata", "NOPERM")
        if value is not None and len(value) > MAX_VALUE_SIZE:
            raise No("Value too large", f"METADATA MAXSIZE {MAX_VALUE_SIZE}")  # RFC 5464 §4.3
        plan.append((e, value))
    index = await _index(store, account.id, scope)
    new = {e for e, v in plan if v is not None} - set(index)
    if _count(index) + len(new) > MAX_ENTRIES:
        raise No("Too many metadata entries", "METADATA TOOMANY")
    for e, value in plan:
        await set_entry(store, account.id, scope, e, value, max_entries=MAX_ENTRIES, locks=locks)
    return Reply(b"", "SETMETADATA completed")
