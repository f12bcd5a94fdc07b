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

import time
from typing import TYPE_CHECKING

from mailhouse.message.sections import base64_binary_parts
from mailhouse.proto.imap.commands import Append, CatenateText, CatenateURL
from mailhouse.proto.imap.sequence import SequenceSet
from mailhouse.store.api import NewMessage
from mailhouse.store.crlf import to_crlf

from .. import namespaces, urlauth
from ..context import Ok
from ..errors import No
from ..fetch_stream import STREAM_MIN
from ..quota import check_quota
from ..updates import note_own

if TYPE_CHECKING:
    from mailhouse.proto.imap import Command

    from ..context import SessionContext


async def resolve_url(s: SessionContext, url: bytes) -> bytes:
    """The octets a CATENATE URL part names (RFC 4469 §5) via ``urlauth.resolve_url``, which
    checks URLAUTH tokens and keeps plain URLs inside the logged-in account (``NO [BADURL]``)."""
    data = await urlauth.resolve_url(s.store, s.acc(), url, hostnames=urlauth.local_hostnames(s.cfg.hostname))
    assert data is not None
    return data


async def cmd_append(s: SessionContext, cmd: Command) -> Ok | None:
    args = cmd.args
    assert isinstance(args, Append)
    res = await namespaces.target(s, args.mailbox)  # RFC 4314 §4: APPEND needs i
    mb = res.mailbox
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
            binary = any(isinstance(p, CatenateText) and p.binary for p in m.catenate)
        else:
            data = m.data or b""
            binary = m.binary
        if binary or b"\0" in data:
            # RFC 3516 §4.4: literal8 data may hold binary parts; keep their octets as base64
            # (a big message is parsed off the event loop)
            if len(data) >= STREAM_MIN:
                rewritten = await s.node.big.offload(base64_binary_parts, data)
            else:
                rewritten = base64_binary_parts(data)
            data = rewritten if rewritten is not None else data
        data = to_crlf(data)  # store invariant: CRLF line endings, so RFC822.SIZE = stored size
        if not data:
            raise No("Cannot append an empty message", "CANNOT")
        if len(data) > limit:
            raise No("Message too big", "TOOBIG")  # RFC 7889 §4
        flags = frozenset(f for f in m.flags if f.upper() != "\\RECENT")  # RFC 9051 §2.3.2
        flags = namespaces.allowed_flags(res.rights, flags)  # RFC 4314 §4: flags need s/w/t
        when = m.internal_date.timestamp() if m.internal_date is not None else time.time()
        items.append((data, flags, when))
    await check_quota(s.store, mb.account_id, sum(len(d) for d, _, _ in items), len(items))
    # the octets and rows in one commit where the backend keeps small blobs inline (store.append_octets),
    # each message's full-text document in the same transaction (issue 13 §4)
    recs = await s.store.append_octets([(d, NewMessage(mb.id, "", len(d), f, w)) for d, f, w in items])
    for r, (d, _, _) in zip(recs, items, strict=True):
        s.node.messages.remember(
            r.blob_key, d
        )  # clients usually fetch what they just appended (Sent, Drafts)
    note_own(s, mb.id, [r.uid for r in recs])  # RFC 5465 §5.2: no MessageNew FETCH for these
    uids = SequenceSet.from_numbers(r.uid for r in recs)
    return Ok("APPEND completed", f"APPENDUID {mb.uidvalidity} {uids}")  # RFC 4315 §3
