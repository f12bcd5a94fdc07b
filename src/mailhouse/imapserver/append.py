"""APPEND: single, MULTIAPPEND, literal8, CATENATE; APPENDUID; APPENDLIMIT; TRYCREATE.

RFCs: RFC 9051 §6.3.12 (APPEND, ``[TRYCREATE]``, INTERNALDATE), RFC 3502 (MULTIAPPEND: all or
nothing), RFC 4315 §3 (``[APPENDUID uidvalidity uid-set]``), RFC 3516 §4.4 (literal8 data),
RFC 4469 (CATENATE: TEXT and URL parts, ``[BADURL]``, ``[TOOBIG]``), RFC 5092 (IMAP URL
syntax of CATENATE URLs), RFC 7889 (APPENDLIMIT, ``[TOOBIG]``), RFC 6855 §4 (``UTF8 (...)``),
RFC 9208 §5.1 (``[OVERQUOTA]``).

Durability (DESIGN.md): the tagged OK is sent only after every blob is fsynced
(``BlobStore.put``) and the index rows are committed (one ``MailIndex.append`` call, so a
MULTIAPPEND commits all its messages in one transaction or none).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from typing import TYPE_CHECKING

from mailhouse.message.sections import fetch_section, parse_section_spec
from mailhouse.proto.imap.commands import Append, CatenateText, CatenateURL
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import NewMessage

from .errors import No
from .mailboxes import check_name
from .selected import load
from .store_cmd import check_quota

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from .session import IMAPSession, Ok

# RFC 5092 §6: [imap://authority]/enc-mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=a[.b]]
_IMAP_URL = re.compile(
    r"^(?:imap://[^/]*)?/(?P<mbox>[^;]*?)(?:;UIDVALIDITY=(?P<uv>[0-9]+))?/;UID=(?P<uid>[0-9]+)"
    r"(?:/;SECTION=(?P<sec>[^/;]*))?(?:/;PARTIAL=(?P<ps>[0-9]+)(?:\.(?P<pl>[0-9]+))?)?"
    r"(?:;EXPIRE=[^;]*)?(?:;URLAUTH=.*)?$",
    re.IGNORECASE,
)


async def resolve_url(s: IMAPSession, url: bytes) -> bytes:
    """The octets an IMAP URL of this account names (RFC 4469 §3: ``NO [BADURL url]`` if none).

    URLAUTH URLs of other users are delegated to the URLAUTH module when it offers
    ``resolve_url``; a plain URL can only name the logged-in account's own messages."""
    from . import extensions

    delegated = await extensions.resolve_url(s, url)
    if delegated is not None:
        return delegated
    text = url.decode("utf-8", "replace")
    bad = No("Invalid or unknown URL", "BADURL " + _url_code(text))
    m = _IMAP_URL.match(text)
    if m is None:
        raise bad
    name = urllib.parse.unquote(m.group("mbox") or "")
    if not name and s.selected is not None:
        name = s.selected.mailbox.name
    try:
        mb = await s.store.get_mailbox(s.acc().id, check_name(name))
    except No:
        raise bad from None
    if mb is None or (m.group("uv") and int(m.group("uv")) != mb.uidvalidity):
        raise bad
    uid = int(m.group("uid"))
    rec = next((r for r in await s.store.list_messages(mb.id) if r.uid == uid), None)
    if rec is None:
        raise bad
    raw, tree = await load(s.store, rec)
    try:
        spec = parse_section_spec(urllib.parse.unquote(m.group("sec") or ""))
        partial = None
        if m.group("ps") is not None:
            start = int(m.group("ps"))
            partial = (start, int(m.group("pl")) if m.group("pl") else max(len(raw) - start, 0) or 1)
        return fetch_section(raw, tree, spec, partial, missing_ok=False)
    except (ValueError, LookupError):
        raise bad from None


def _url_code(url: str) -> str:
    # resp-text-code text must not contain "]" or CR/LF (RFC 9051 §9)
    return "".join(ch for ch in url[:200] if ch not in "]\r\n")


async def cmd_append(s: IMAPSession, cmd: Command) -> Ok | None:
    from .session import Ok

    args = cmd.args
    assert isinstance(args, Append)
    name = check_name(args.mailbox)
    mb = await s.store.get_mailbox(s.acc().id, name)
    if mb is None:
        raise No("Mailbox does not exist", "TRYCREATE")  # RFC 9051 §6.3.12
    limit = s.cfg.max_message_size
    items: list[tuple[bytes, frozenset[str], float]] = []
    for m in args.messages:
        if m.catenate is not None:
            parts: list[bytes] = []
            total = 0
            for p in m.catenate:
                if isinstance(p, CatenateText):
                    chunk = p.data
                else:
                    assert isinstance(p, CatenateURL)
                    chunk = await resolve_url(s, p.url)
                total += len(chunk)
                if total > limit:
                    raise No("Message too big", "TOOBIG")  # RFC 4469 §5 / RFC 7889
                parts.append(chunk)
            data = b"".join(parts)
        else:
            data = m.data or b""
        if not data:
            raise No("Cannot append an empty message", "CANNOT")
        if len(data) > limit:
            raise No("Message too big", "TOOBIG")  # RFC 7889 §4
        flags = frozenset(f for f in m.flags if f.upper() != "\\RECENT")  # RFC 9051 §2.3.2
        when = m.internal_date.timestamp() if m.internal_date is not None else time.time()
        items.append((data, flags, when))
    await check_quota(s, sum(len(d) for d, _, _ in items), len(items))
    keys: list[str] = []
    try:
        for data, _, _ in items:
            keys.append(await s.store.blobs.put(data))  # fsynced before it returns
        recs = await s.store.append(
            [NewMessage(mb.id, k, len(d), f, w) for k, (d, f, w) in zip(keys, items, strict=True)]
        )
    except BaseException:
        if keys:
            try:
                await s.store.blobs.delete(keys)
            except Exception:  # noqa: BLE001 - orphan blobs are harmless; the error below matters
                s.log.warning("could not remove %d orphan blob(s)", len(keys))
        raise
    uids = SequenceSet.from_numbers(r.uid for r in recs)
    return Ok("APPEND completed", f"APPENDUID {mb.uidvalidity} {uids}")  # RFC 4315 §3
