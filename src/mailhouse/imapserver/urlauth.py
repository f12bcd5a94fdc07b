"""URLAUTH: GENURLAUTH, RESETKEY, URLFETCH (RFC 4467), URLAUTH=BINARY (RFC 5524), and the
URL resolver CATENATE (RFC 4469) and BURL (RFC 4468) use.

URLs (RFC 5092 §11 as extended by RFC 4467 §8)::

    imap://user@host/Mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=a.b]
           [;EXPIRE=rfc3339];URLAUTH=access:INTERNAL:hex-token

``access`` is ``anonymous``, ``authuser``, ``user+<name>`` or ``submit+<name>``. The token
of the only mechanism, ``INTERNAL``, is HMAC-SHA256 over the URL rump (everything up to and
including ``;URLAUTH=access``), keyed with the *mailbox access key*: 32 random octets per
mailbox, created on first GENURLAUTH and stored as server-reserved mailbox metadata
(``/private/vendor/mailhouse/urlauth-key``, invisible to clients, see ``metadata``).
RESETKEY replaces it, which invalidates every URL issued for the mailbox (RFC 4467 §6.2).

Checks (a failed URLFETCH item answers NIL, RFC 4467 §6.3; GENURLAUTH refuses with NO):

* GENURLAUTH: the URL names the authenticated user and a UID, the mailbox exists (with that
  UIDVALIDITY when the URL has one: RFC 5092 §6 makes it optional, as Dovecot does; the key
  behind the token is per mailbox id *and* UIDVALIDITY, so the URL still dies with the mailbox);
* URLFETCH: token valid (constant-time compare), not expired, UIDVALIDITY unchanged,
  message exists, and the requester is allowed by ``access``; ``submit+`` only for the
  submission server (``as_submit=True``), never for a plain IMAP URLFETCH;
* :func:`resolve_url` without ``;URLAUTH`` (CATENATE, RFC 4469 §5) only reaches the
  requester's own mailboxes; a relative URL ``/Mailbox;UIDVALIDITY=…/;UID=…`` is allowed.

Usage by the session (errors are ``errors.No`` / ``errors.Bad``)::

    reply = await urlauth.genurlauth(store, account, cmd.args, hostnames={cfg.hostname})
    reply = await urlauth.resetkey(store, account, cmd.args)
    # plain urls (bytes) and RFC 5524 items: FetchRequest per cmd.args.requests() (commands/urlauth.py)
    reply = await urlauth.urlfetch(store, account, requests, hostnames={cfg.hostname})
    write(reply.data + tagged(tag, "OK", reply.text, reply.code))
    # CATENATE URL part (APPEND): raises errors.No [BADURL url] when it cannot be used
    data = await urlauth.resolve_url(store, account, url_bytes, hostnames={cfg.hostname})

Capabilities: :data:`CAPABILITIES`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from mailhouse.imapserver import metadata
from mailhouse.imapserver.errors import Bad, No
from mailhouse.message.bodystructure import bodystructure
from mailhouse.message.envelope import imap_encode
from mailhouse.message.parse import MessagePart, parse_message
from mailhouse.message.sections import (
    SectionNotFound,
    SectionSpec,
    UnknownCTE,
    decode_transfer_encoding,
    fetch_section,
    parse_section_spec,
    resolve_part,
)
from mailhouse.proto.imap import response
from mailhouse.proto.imap.commands import GenUrlAuth, ResetKey
from mailhouse.store.api import Account, Mailbox, Store

__all__ = [
    "CAPABILITIES",
    "KEY_ENTRY",
    "MECHANISM",
    "FetchRequest",
    "ImapUrl",
    "Reply",
    "genurlauth",
    "parse_url",
    "resetkey",
    "resolve_url",
    "urlfetch",
]

CAPABILITIES = ("URLAUTH", "URLAUTH=BINARY")
MECHANISM = "INTERNAL"  # RFC 4467 §7: the one mechanism every server supports
KEY_ENTRY = metadata.RESERVED_PREFIX + "urlauth-key"
KEY_BYTES = 32  # RFC 4467 §7: at least 128 bits; HMAC-SHA256 key size
MAX_URL = 4096  # Limit: longer URLs are refused (keeps the HMAC input and replies bounded)

_URL_RE = re.compile(
    r"""^(?:imap://(?:(?P<user>[^@/;]+)(?:;AUTH=[^@/]+)?@)?(?P<host>[^/]+))?
    /(?P<mailbox>[^;?]+?)
    (?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?
    /;UID=(?P<uid>[1-9][0-9]{0,9})
    (?:/;SECTION=(?P<section>[^/;]+))?
    (?:/;PARTIAL=(?P<pstart>[0-9]{1,10})(?:\.(?P<plen>[1-9][0-9]{0,9}))?)?
    (?P<auth>
      (?:;EXPIRE=(?P<expire>[^;]+))?
      ;URLAUTH=(?P<access>anonymous|authuser|(?:submit|user)\+[^:;]+)
      (?::(?P<mech>[A-Za-z0-9-]+):(?P<token>[0-9A-Fa-f]+))?
    )?$""",
    re.I | re.X,
)


@dataclass(frozen=True, slots=True)
class ImapUrl:
    """A parsed IMAP URL (RFC 5092) with its URLAUTH parts (RFC 4467)."""

    text: str
    user: str | None
    host: str | None
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: str | None
    partial: tuple[int, int] | None
    expire: dt.datetime | None
    access: str | None
    mechanism: str | None
    token: str | None

    @property
    def rump(self) -> str:
        """Everything up to and including ``;URLAUTH=access`` (RFC 4467 §2)."""
        if self.mechanism is None:
            return self.text
        return self.text[: len(self.text) - len(self.mechanism) - len(self.token or "") - 2]


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """One URLFETCH item; RFC 5524 §4: ``(url [BODYPARTSTRUCTURE] [BINARY | BODY])``.

    A plain URLFETCH url is ``FetchRequest(url)`` (``body`` True, nothing else)."""

    url: bytes
    binary: bool = False
    bodypartstructure: bool = False
    body: bool = True
    extended: bool = False  # was the RFC 5524 parenthesised form used?


@dataclass(frozen=True, slots=True)
class Reply:
    """Untagged ``data`` to send, then ``tag OK [code] text``."""

    data: bytes
    text: str = "Completed"
    code: str | None = None


def local_hostnames(hostname: str) -> set[str]:
    """The host names a URL of this server may carry (the configured name and loopback)."""
    return {hostname, "localhost", "127.0.0.1"}


def parse_url(url: bytes | str) -> ImapUrl:
    """Parse an absolute ``imap://`` or server-relative ``/Mailbox...`` URL; ValueError if bad."""
    text = url.decode("utf-8") if isinstance(url, bytes) else url
    if len(text) > MAX_URL or any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise ValueError("bad URL")
    m = _URL_RE.match(text)
    if m is None:
        raise ValueError("not an IMAP message URL")
    expire = None
    if m["expire"]:
        try:
            expire = dt.datetime.fromisoformat(unquote(m["expire"]).replace("z", "Z"))
        except ValueError as e:
            raise ValueError("bad EXPIRE") from e
        if expire.tzinfo is None:
            raise ValueError("EXPIRE needs a time zone")  # RFC 3339 date-time
    partial = None
    if m["pstart"] is not None:
        partial = (int(m["pstart"]), int(m["plen"]) if m["plen"] else 2**63)
    mailbox = unquote(m["mailbox"], errors="strict")  # RFC 5092 §6: UTF-8, %-encoded
    if mailbox.upper() == "INBOX":
        mailbox = "INBOX"
    access = m["access"]
    if access and access.lower() in ("anonymous", "authuser"):
        access = access.lower()
    elif access:
        kind, _, who = access.partition("+")
        access = f"{kind.lower()}+{unquote(who).lower()}"
    return ImapUrl(
        text=text,
        user=unquote(m["user"]).lower() if m["user"] else None,
        host=m["host"].lower() if m["host"] else None,
        mailbox=mailbox,
        uidvalidity=int(m["uidvalidity"]) if m["uidvalidity"] else None,
        uid=int(m["uid"]),
        section=unquote(m["section"]) if m["section"] else None,
        partial=partial,
        expire=expire,
        access=access,
        mechanism=m["mech"].upper() if m["mech"] else None,
        token=m["token"].lower() if m["token"] else None,
    )


def _token(key: bytes, rump: str) -> str:
    return hmac.new(key, rump.encode("utf-8"), hashlib.sha256).hexdigest()


async def _key(store: Store, account_id: int, box: Mailbox) -> bytes | None:
    """The mailbox's URLAUTH key, or None when it has none yet."""
    return await metadata.get_entry(store, account_id, metadata.mailbox_scope(box), KEY_ENTRY)


async def _key_or_new(store: Store, account_id: int, box: Mailbox, locks: metadata.MetadataLocks) -> bytes:
    """The mailbox's URLAUTH key, made and stored on first use."""
    key = await _key(store, account_id, box)
    if key is None:
        key = secrets.token_bytes(KEY_BYTES)
        await metadata.set_entry(store, account_id, metadata.mailbox_scope(box), KEY_ENTRY, key, locks=locks)
    return key


def _host(url: ImapUrl) -> str | None:
    if url.host is None:
        return None
    return url.host.rsplit(":", 1)[0] if not url.host.startswith("[") else url.host


def _host_ok(url: ImapUrl, hostnames: Collection[str] | None) -> bool:
    host = _host(url)
    if host is None or not hostnames:
        return True
    return host in {h.lower() for h in hostnames}


def _address(url: ImapUrl, hostnames: Collection[str] | None) -> tuple[str | None, bool]:
    """The account address a URL names, and whether its host may be a mail domain instead of
    this server's name: ``imap://joe@example.org/...`` (an unqualified user on a host that is
    none of our names) is ``joe@example.org`` — the spelling mail domains and Dovecot's
    imaptest scripts use; the caller still requires that account (RFC 5092 §3.2 userinfo)."""
    if url.user is None or "@" in url.user or _host_ok(url, hostnames):
        return url.user, False
    return f"{url.user}@{_host(url)}", True


async def genurlauth(
    store: Store,
    account: Account,
    cmd: GenUrlAuth,
    *,
    hostnames: Collection[str] | None = None,
    locks: metadata.MetadataLocks,
) -> Reply:
    """GENURLAUTH rump mechanism ... (RFC 4467 §7): ``* GENURLAUTH url ...``."""
    out: list[bytes] = []
    for rump_b, mech in cmd.items:
        if mech.upper() != MECHANISM:
            raise No(f"Unsupported URLAUTH mechanism {mech[:20]}")
        try:
            url = parse_url(rump_b)
        except (ValueError, UnicodeDecodeError):
            raise No("Invalid URL", "BADURL") from None
        if url.access is None or url.mechanism is not None:
            raise No("URL must end with ;URLAUTH=access", "BADURL")
        # RFC 5092 §6 makes ;UIDVALIDITY optional and RFC 4467 §6 does not require it: without
        # it the token still dies with the mailbox, whose key is kept per id *and* UIDVALIDITY
        who, via_domain = _address(url, hostnames)  # another host: only the user's own domain
        if who != account.address.lower() or not (via_domain or _host_ok(url, hostnames)):
            raise No("URL must name your own mailbox", "BADURL")
        box = await store.get_mailbox(account.id, url.mailbox)
        if box is None or (url.uidvalidity is not None and box.uidvalidity != url.uidvalidity):
            raise No("No such mailbox", "BADURL")
        key = await _key_or_new(store, account.id, box, locks)
        full = f"{url.text}:{MECHANISM.lower()}:{_token(key, url.text)}"
        out.append(response.string(full))
    return Reply(b"* GENURLAUTH " + b" ".join(out) + b"\r\n", "GENURLAUTH completed")


async def resetkey(store: Store, account: Account, cmd: ResetKey, *, locks: metadata.MetadataLocks) -> Reply:
    """RESETKEY [mailbox [mechanism ...]] (RFC 4467 §7): new access key(s); old URLs die.
    ``locks``: the node's metadata locks (see ``metadata.set_entry``)."""
    for mech in cmd.mechanisms:
        if mech.upper() != MECHANISM:
            raise Bad(f"Unsupported URLAUTH mechanism {mech[:20]}")
    if cmd.mailbox is None:
        boxes = await store.list_mailboxes(account.id)
    else:
        name = "INBOX" if cmd.mailbox.upper() == "INBOX" else cmd.mailbox
        box = await store.get_mailbox(account.id, name)
        if box is None:
            raise No("No such mailbox", "NONEXISTENT")
        boxes = [box]
    for box in boxes:
        scope = metadata.mailbox_scope(box)
        if cmd.mailbox is None:  # forget every key: created anew on the next GENURLAUTH
            if await metadata.get_entry(store, account.id, scope, KEY_ENTRY) is not None:
                await metadata.set_entry(store, account.id, scope, KEY_ENTRY, None, locks=locks)
        else:
            key = secrets.token_bytes(KEY_BYTES)
            await metadata.set_entry(store, account.id, scope, KEY_ENTRY, key, locks=locks)
    return Reply(b"", "RESETKEY completed")


@dataclass(slots=True)
class _Resolved:
    raw: bytes
    url: ImapUrl


async def _resolve(
    store: Store,
    requester: Account | None,
    url_b: bytes,
    *,
    hostnames: Collection[str] | None,
    as_submit: bool,
    require_auth: bool,
) -> _Resolved:
    """The message a URL designates, after every check; ValueError with the reason if not."""
    url = parse_url(url_b)
    user, via_domain = _address(url, hostnames)
    if not via_domain and not _host_ok(url, hostnames):
        raise ValueError("URL for another server")
    if url.access is None:
        if require_auth:
            raise ValueError("URLFETCH needs a URLAUTH URL")
        # RFC 4469 §5: a plain URL reaches only the requester's own messages
        if requester is None or (user is not None and user != requester.address.lower()):
            raise ValueError("not your mailbox")
        owner = requester
    else:
        if url.mechanism != MECHANISM or url.token is None or url.user is None:
            raise ValueError("URL is not authorized")
        if url.expire is not None and url.expire <= dt.datetime.now(dt.UTC):
            raise ValueError("URL expired")  # RFC 4467 §3
        acc = url.access
        who = requester.address.lower() if requester is not None else None
        if acc == "authuser" and who is None:
            raise ValueError("needs an authenticated user")
        if acc.startswith("user+") and acc[5:] != who:
            raise ValueError("URL is for another user")
        if acc.startswith("submit+") and not (as_submit and acc[7:] == who):
            raise ValueError("URL is for the submission server")  # RFC 4467 §4.2
        found = await store.get_account(user or "")
        if found is None:  # (also: a host that is neither our name nor the user's domain)
            raise ValueError("no such user")
        owner = found
    box = await store.get_mailbox(owner.id, url.mailbox)
    if box is None or (url.uidvalidity is not None and box.uidvalidity != url.uidvalidity):
        raise ValueError("no such mailbox")
    if url.access is not None:
        # no ;UIDVALIDITY (RFC 5092 §6: optional): the key is per mailbox id and UIDVALIDITY
        # (metadata.mailbox_scope), so a recreated mailbox never honours an old URL
        key = await _key(store, owner.id, box)
        if key is None or not hmac.compare_digest(_token(key, url.rump), url.token or ""):
            raise ValueError("bad URLAUTH token")
    rec = next((r for r in await store.list_messages(box.id) if r.uid == url.uid), None)
    if rec is None:
        raise ValueError("no such message")
    return _Resolved(await store.blobs.get(rec.blob_key), url)


def _described(tree: MessagePart, spec: SectionSpec) -> MessagePart:
    """The entity a URL's section is about (its BODYPARTSTRUCTURE, the CTE its BINARY removes):
    part N for ``N`` and ``N.MIME``; the message for ``HEADER``/``HEADER.FIELDS``/``TEXT`` (the
    top-level one, or the message embedded in part N) — as Dovecot answers."""
    p = resolve_part(tree, spec.part) if spec.part else tree
    if spec.text in ("", "MIME"):
        return p
    emb = p.embedded
    return emb if emb is not None else p


def _section(raw: bytes, url: ImapUrl, *, binary: bool) -> bytes:
    tree = parse_message(raw)
    spec = parse_section_spec(url.section or "")
    if binary and spec.text in ("", "TEXT") and (spec.part or spec.text):
        # RFC 5524 §3 / RFC 3516 §4.2: the content-transfer-decoded body; multipart and message
        # bodies as stored. UnknownCTE: the caller answers (BINARY NIL)
        m = _described(tree, spec)
        data = fetch_section(raw, tree, spec, None, missing_ok=False)
        if not m.is_multipart and not m.is_message:
            data = decode_transfer_encoding(data, m.cte)
    else:  # the whole message, a header, a MIME header: the octets as stored
        data = fetch_section(raw, tree, spec, None, missing_ok=False)
    if url.partial is not None:
        start, length = url.partial
        data = data[start : start + length]
    return data


async def resolve_url(
    store: Store,
    account: Account | None,
    url: bytes,
    *,
    hostnames: Collection[str] | None = None,
    as_submit: bool = False,
) -> bytes:
    """The octets a URL designates (for CATENATE URL parts, RFC 4469 §5, and BURL).

    Raises ``errors.No`` with ``BADURL <url>`` (RFC 4469 §6) when it cannot be used."""
    try:
        got = await _resolve(
            store, account, url, hostnames=hostnames, as_submit=as_submit, require_auth=False
        )
        return _section(got.raw, got.url, binary=False)
    except (ValueError, UnicodeDecodeError, SectionNotFound, UnknownCTE):
        code = "BADURL " + url.decode("ascii", "replace")[:200].replace("]", "%5D")
        raise No("Cannot use this URL", code) from None


async def urlfetch(
    store: Store,
    account: Account | None,
    urls: Sequence[bytes | FetchRequest],
    *,
    hostnames: Collection[str] | None = None,
) -> Reply:
    """URLFETCH url ... (RFC 4467 §7; RFC 5524 extended items): one ``* URLFETCH`` line per URL.

    A URL that fails any check yields NIL (RFC 4467 §6.3) for plain items; for RFC 5524 items
    the server still answers NIL (RFC 5524 §4: "if the URL is invalid ... NIL")."""
    out = b""
    for item in urls:
        req = item if isinstance(item, FetchRequest) else FetchRequest(item)
        head = b"* URLFETCH " + response.string(req.url)
        try:
            got = await _resolve(
                store, account, req.url, hostnames=hostnames, as_submit=False, require_auth=True
            )
            parts: list[bytes] = []
            if req.bodypartstructure:
                bps = _bodypartstructure(got.raw, got.url, binary=req.binary)
                parts.append(b"(BODYPARTSTRUCTURE " + bps + b")")
            if req.binary:
                try:
                    data = _section(got.raw, got.url, binary=True)
                    parts.append(b"(BINARY " + response.encode_value(response.Binary(data)) + b")")
                except UnknownCTE:  # the part is there but cannot be decoded: BINARY NIL only
                    parts.append(b"(BINARY NIL)")  # (Dovecot's imaptest urlauth-binary script)
            elif req.body:
                data = _section(got.raw, got.url, binary=False)
                parts.append(
                    (b"(BODY " + response.string(data) + b")") if req.extended else response.string(data)
                )
        except (ValueError, UnicodeDecodeError, SectionNotFound, UnknownCTE):
            out += head + b" NIL\r\n"
            continue
        out += head + (b" " + b" ".join(parts) if parts else b"") + b"\r\n"
    return Reply(out, "URLFETCH completed")


def _bodypartstructure(raw: bytes, url: ImapUrl, *, binary: bool = False) -> bytes:
    """RFC 5524 §4: the BODYSTRUCTURE of the part the URL names (for HEADER / TEXT sections:
    of their message, for N.MIME: of part N, as Dovecot answers). Asked together with BINARY,
    a base64 / quoted-printable leaf gets the size and line count of the decoded octets BINARY
    sends, its encoding field kept — as Dovecot 2.3 answers (imaptest ``urlauth-binary``:
    ``"base64" 11 0`` for a decoded "hello world")."""
    tree = parse_message(raw)
    spec = parse_section_spec(url.section or "")
    part = _described(tree, spec)
    node = bodystructure(raw, part)
    if (
        binary
        and not part.is_multipart
        and not part.is_message
        and part.cte in ("base64", "quoted-printable")
    ):
        data = decode_transfer_encoding(raw[part.body_start : part.body_end], part.cte)
        # body-type-1part: type subtype params id description encoding size [lines (text/*)] ...
        node[6] = len(data)
        if part.type == "text" and not part.opaque:
            node[7] = data.count(b"\n")
    return imap_encode(node)
