"""QUOTA: GETQUOTA, GETQUOTAROOT, SETQUOTA (RFC 9208; obsoletes RFC 2087).

Model: one quota root per account, named ``""`` (RFC 9208 §3.2: a server may use one root
for every mailbox of a user), with two resources (RFC 9208 §5):

* ``STORAGE`` — sum of RFC822.SIZE of all messages, in units of 1024 octets (§5.1);
* ``MESSAGE`` — number of messages in all mailboxes (§5.2).

Limits come from ``Account.quota_bytes`` / ``Account.quota_messages`` (0: unlimited; such a
resource is not listed, RFC 9208 §4.1.1) and usage from ``store.usage(account_id)``.

SETQUOTA (capability QUOTASET, RFC 9208 §4.1.3) is for administrators only (``is_admin``);
anyone else gets ``NO [NOPERM]``. An administrator names another account's root by its
address (``SETQUOTA "bob@example.org" (STORAGE 1024)``); ``""`` is the admin's own account.
Resources not listed are removed (unlimited), as RFC 9208 §4.1.3 requires.

Usage by the session (all return a :class:`Reply`; errors are ``errors.No`` / ``errors.Bad``)::

    reply = await quota.getquota(store, account, cmd.args)           # GetQuota
    reply = await quota.getquotaroot(store, account, cmd.args, utf8=...)  # MailboxArg
    reply = await quota.setquota(store, account, cmd.args)           # SetQuota
    write(reply.data + tagged(tag, "OK", reply.text, reply.code))

APPEND, COPY and MOVE refuse what would exceed the limits with :func:`check_quota`
(``NO [OVERQUOTA]``, RFC 9208 §5.1).

Invariants: never reveals another account's usage to a non-admin; the response is built only
from numbers and the root/mailbox name through the ``proto.imap.response`` encoders.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhouse.imapserver.errors import Bad, No
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import GetQuota, MailboxArg, SetQuota
from mailhouse.store.api import Account, Store

__all__ = [
    "CAPABILITIES",
    "ROOT",
    "Reply",
    "check_quota",
    "getquota",
    "getquotaroot",
    "quota_line",
    "setquota",
]

ROOT = ""
# RFC 9208 §7: QUOTA, one QUOTA=RES-<name> per resource, QUOTASET for SETQUOTA.
CAPABILITIES = ("QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", "QUOTASET")
KIB = 1024  # RFC 9208 §5.1: STORAGE is in units of 1024 octets
# RFC 9208 §4.1.3: limits are number64; keep them within what the store's INTEGER holds.
MAX_LIMIT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Reply:
    """Untagged ``data`` to send, then ``tag OK [code] text``."""

    data: bytes
    text: str = "Completed"
    code: str | None = None


async def check_quota(store: Store, account_id: int, add_bytes: int, add_messages: int) -> None:
    """RFC 9208 §5.1: refuse with ``NO [OVERQUOTA]`` when the account limits would be exceeded."""
    acc = await store.get_account_by_id(account_id)
    if acc is None or (not acc.quota_bytes and not acc.quota_messages):
        return
    use = await store.usage(acc.id)
    if acc.quota_bytes and use.bytes + add_bytes > acc.quota_bytes:
        raise No("Quota exceeded (storage)", "OVERQUOTA")
    if acc.quota_messages and use.messages + add_messages > acc.quota_messages:
        raise No("Quota exceeded (messages)", "OVERQUOTA")


def _kib(n: int) -> int:
    return (n + KIB - 1) // KIB  # round up: 1 octet over the limit must show as over


async def quota_line(store: Store, account: Account, root: str = ROOT) -> bytes:
    """``* QUOTA root (STORAGE used limit MESSAGE used limit)`` for ``account`` (RFC 9208 §5.1)."""
    fresh = await store.get_account_by_id(account.id) or account  # limits may have changed
    usage = await store.usage(fresh.id)
    items: list[response.Value] = []
    if fresh.quota_bytes:
        items += [response.Atom("STORAGE"), _kib(usage.bytes), _kib(fresh.quota_bytes)]
    if fresh.quota_messages:
        items += [response.Atom("MESSAGE"), usage.messages, fresh.quota_messages]
    return b"* QUOTA " + response.astring(root) + b" " + response.encode_value(items) + b"\r\n"


async def _root_account(store: Store, account: Account, root: str) -> Account:
    if root == ROOT:
        return account
    if account.is_admin and "@" in root:
        other = await store.get_account(root.lower())
        if other is not None:
            return other
    raise No("No such quota root", "NONEXISTENT")  # RFC 5530 §3 (same answer: no probing)


async def getquota(store: Store, account: Account, cmd: GetQuota) -> Reply:
    """GETQUOTA root (RFC 9208 §4.2)."""
    target = await _root_account(store, account, cmd.root)
    return Reply(await quota_line(store, target, cmd.root), "GETQUOTA completed")


def _canonical_mailbox(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name  # RFC 9051 §5.1: INBOX is case-insensitive


async def getquotaroot(store: Store, account: Account, cmd: MailboxArg, *, utf8: bool = False) -> Reply:
    """GETQUOTAROOT mailbox (RFC 9208 §4.3): ``* QUOTAROOT mailbox ""`` then the QUOTA line."""
    if await store.get_mailbox(account.id, _canonical_mailbox(cmd.mailbox)) is None:
        raise No("No such mailbox", "NONEXISTENT")
    head = b"* QUOTAROOT " + response.mailbox(cmd.mailbox, utf8=utf8) + b" " + response.string(ROOT) + b"\r\n"
    return Reply(head + await quota_line(store, account), "GETQUOTAROOT completed")


async def setquota(store: Store, account: Account, cmd: SetQuota) -> Reply:
    """SETQUOTA root (resource limit ...) (RFC 9208 §4.1.3), administrators only."""
    if not account.is_admin:
        raise No("Only administrators may change quotas", "NOPERM")  # RFC 5530 §3
    target = await _root_account(store, account, cmd.root)
    quota_bytes = quota_messages = 0
    seen: set[str] = set()
    for name, limit in cmd.limits:
        if name in seen:
            raise Bad(f"Resource {name[:20]} given twice")
        seen.add(name)
        if limit < 0 or limit > MAX_LIMIT // KIB:
            raise Bad("Limit out of range")
        if name == "STORAGE":
            quota_bytes = limit * KIB
        elif name == "MESSAGE":
            quota_messages = limit
        else:  # RFC 9208 §4.1.3: an unsupported resource fails the whole command
            raise No(f"Unsupported resource {name[:40]}")
    await store.set_quota(target.address, quota_bytes, quota_messages)
    return Reply(await quota_line(store, target, cmd.root), "SETQUOTA completed")
