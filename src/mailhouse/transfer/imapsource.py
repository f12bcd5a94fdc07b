"""Another IMAP server as an import source (RFC 9051 / RFC 3501): ``imaps://`` (implicit TLS,
RFC 8314 §3.3) or ``imap://`` with STARTTLS (RFC 9051 §6.2.1); certificates verified by default.

Folders come from LIST with their RFC 6154 special-use attributes, UIDVALIDITY from STATUS, each
message's UID, FLAGS, INTERNALDATE and RFC822.SIZE from one UID FETCH per folder, its octets from
``UID FETCH <uid> BODY.PEEK[]`` (PEEK: the source's \\Seen flags are left alone). A message's
identity is ``imap:<host>:<folder>:<UIDVALIDITY>:<UID>`` (RFC 9051 §2.3.1.1: that pair names one
message for ever).

The client is IMAPClient (maintained; it parses FETCH responses, literals and modified UTF-7
names, which imaplib leaves to the caller), synchronous, in the importer's worker thread: an
import is one connection doing one thing at a time, so an async client would buy nothing, and
the store work stays on the event loop. A dropped connection (the server closed it, a reset, a
timeout) is retried with a fresh login and SELECT, up to `RETRIES` times with back-off; a message
that still cannot be fetched is a per-message failure, and the next run resumes it.
"""

from __future__ import annotations

import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailhouse.transfer.importer import SourceError, SourceFolder, SourceMessage

RETRIES = 5  # reconnects per operation before it is reported as failed
BACKOFF = 0.2  # seconds, doubled per attempt (at most MAX_BACKOFF)
MAX_BACKOFF = 5.0
TIMEOUT = 120.0  # seconds a socket operation may take
LIST_CHUNK = 1000  # UIDs per metadata FETCH
PREFETCH_MESSAGES = 50  # messages per BODY.PEEK[] FETCH
PREFETCH_BYTES = 4 << 20  # octets per BODY.PEEK[] FETCH (RFC822.SIZE), beyond the first message
SPECIAL = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")  # RFC 6154 §2

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ImapUrl:
    host: str
    port: int
    implicit_tls: bool
    user: str


def parse_url(url: str, user: str | None = None) -> ImapUrl:
    """``imaps://[user@]host[:port]`` or ``imap://…`` (RFC 5092 §3, server part only)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("imap", "imaps") or not u.hostname:
        raise SourceError(f"{url}: not an imap:// or imaps:// URL")
    login = urllib.parse.unquote(u.username) if u.username else user
    if not login:
        raise SourceError(f"{url}: no user name (imaps://USER@HOST or --source-user)")
    implicit = u.scheme == "imaps"
    return ImapUrl(u.hostname, u.port or (993 if implicit else 143), implicit, login)


def tls_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:  # only when asked for (--insecure): no chain or name check
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ImapSource:
    """`importer.Source` over an IMAP account; PLAINTEXT_OK allows a server without STARTTLS."""

    def __init__(
        self,
        url: ImapUrl,
        password: str,
        ctx: ssl.SSLContext,
        *,
        plaintext_ok: bool = False,
        retries: int = RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.password = password
        self.ctx = ctx
        self.plaintext_ok = plaintext_ok
        self.retries = retries
        self.sleep = sleep
        self.client: Any = None
        self.selected: str | None = None
        self.reconnects = 0
        self._raw: dict[str, str | bytes] = {}  # folder label -> the name as the server sent it
        self._uidvalidity = 0
        self._listing: dict[str, list[tuple[int, int]]] = {}  # folder -> [(uid, size)] as listed
        self._index: dict[tuple[str, int], int] = {}  # (folder, uid) -> its place in the listing
        self._cache: dict[tuple[str, int], bytes] = {}  # prefetched octets
        self.prefetch = PREFETCH_MESSAGES

    # ---------------------------------------------------------------- connection
    def _connect(self) -> Any:
        u = self.url
        try:
            c = IMAPClient(
                u.host, u.port, use_uid=True, ssl=u.implicit_tls, ssl_context=self.ctx, timeout=TIMEOUT
            )
        except ssl.SSLError as e:
            raise SourceError(f"TLS with {u.host}:{u.port} failed: {e}") from e
        c.normalise_times = False  # INTERNALDATE with its zone
        if not u.implicit_tls:
            if b"STARTTLS" in c.capabilities():
                try:
                    c.starttls(self.ctx)
                except ssl.SSLError as e:
                    raise SourceError(f"STARTTLS with {u.host}:{u.port} failed: {e}") from e
            elif not self.plaintext_ok:
                c.shutdown()
                raise SourceError(
                    f"{u.host}:{u.port} offers no STARTTLS (use imaps://, or --insecure for plaintext)"
                )
        try:
            c.login(u.user, self.password)
        except LoginError as e:
            raise SourceError(f"login as {u.user} at {u.host} failed: {e}") from e
        return c

    def _call(self, fn: Callable[[Any], T]) -> T:
        """FN(client), reconnecting (fresh login, SELECT again) when the connection drops."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                if self.client is None:
                    self.client = self._connect()
                    self.selected = None
                return fn(self.client)
            except (TimeoutError, IMAPClient.AbortError, OSError, EOFError) as e:
                last = e
                self._drop()
                if attempt < self.retries:
                    self.reconnects += 1
                    self.sleep(min(BACKOFF * 2**attempt, MAX_BACKOFF))
            except IMAPClientError as e:  # a NO or BAD: the server's answer, not a lost connection
                raise SourceError(f"{self.url.host}: {e}") from e
        raise SourceError(f"connection to {self.url.host} lost ({self.retries} retries): {last}")

    def _drop(self) -> None:
        c, self.client, self.selected = self.client, None, None
        if c is not None:
            try:
                c.shutdown()
            except Exception:  # noqa: BLE001, S110 - the connection is already gone
                pass

    def _select(self, c: Any, name: str) -> int:
        if self.selected != name:
            info = c.select_folder(self._raw.get(name, name), readonly=True)
            self.selected = name
            self._uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        return self._uidvalidity

    # ---------------------------------------------------------------- Source
    def folders(self) -> list[SourceFolder]:
        def run(c: Any) -> list[SourceFolder]:
            out: list[SourceFolder] = []
            for flags, delim, name in c.list_folders():
                names = {f.decode() if isinstance(f, bytes) else str(f) for f in flags}
                if {"\\Noselect", "\\NonExistent"} & {n.title() for n in names} or "\\NoSelect" in names:
                    continue
                d = delim.decode() if isinstance(delim, bytes) else (delim or "/")
                # IMAPClient gives bytes for a name that is not valid modified UTF-7 (RFC 3501
                # §5.1.3): kept as surrogate escapes (U+FFFD in the target), selected as sent
                label = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
                self._raw[label] = name
                target = label.replace(d, "/") if d != "/" else label
                use = next((s for s in SPECIAL if s in names), None)
                uv = 0
                try:
                    uv = int(c.folder_status(name, [b"UIDVALIDITY"]).get(b"UIDVALIDITY", 0))
                except IMAPClientError:
                    uv = 0
                out.append(SourceFolder(target, label, use, uv))
            return out

        return self._call(run)

    def messages(self, folder: SourceFolder) -> Iterator[SourceMessage]:
        def run(c: Any) -> list[SourceMessage]:
            uv = self._select(c, folder.where)
            uids = sorted(c.search("ALL"))
            out: list[SourceMessage] = []
            for i in range(0, len(uids), LIST_CHUNK):
                got = c.fetch(uids[i : i + LIST_CHUNK], ["FLAGS", "INTERNALDATE", "RFC822.SIZE"])
                for uid in sorted(got):
                    d = got[uid]
                    flags = frozenset(
                        f.decode() if isinstance(f, bytes) else str(f) for f in d.get(b"FLAGS", ())
                    ) - {"\\Recent"}  # RFC 9051 §2.3.2: \Recent is the session's, never stored
                    when = d.get(b"INTERNALDATE")
                    date = when.timestamp() if isinstance(when, datetime) else 0.0
                    out.append(
                        SourceMessage(
                            f"imap:{self.url.host}:{folder.where}:{uv}:{uid}",
                            f"{folder.where} UID {uid}",
                            int(d.get(b"RFC822.SIZE", -1)),
                            flags,
                            date,
                            uid if uv and uv == folder.uidvalidity else 0,
                            None,
                            (folder.where, uid),
                        )
                    )
            return out

        listed = self._call(run)
        self._listing[folder.where] = [(m.ref[1], max(m.size, 0)) for m in listed if isinstance(m.ref, tuple)]
        self._index.update({(folder.where, u): i for i, (u, _) in enumerate(self._listing[folder.where])})
        return iter(listed)

    def read(self, msg: SourceMessage, max_size: int) -> tuple[bytes, SourceMessage]:
        """The octets of MSG; fetched together with the messages listed after it (up to
        `prefetch` messages / PREFETCH_BYTES, as the importer reads them in listing order): one
        round trip per batch instead of per message. A batch the connection cannot carry (it
        drops every time) halves `prefetch` for the rest of the run and MSG is fetched alone."""
        assert isinstance(msg.ref, tuple)
        name, uid = msg.ref
        if (name, uid) not in self._cache:
            self._cache = {}
            uids = self._batch(name, uid, max(msg.size, 0), max_size)
            try:
                got = self._call(lambda c: self._fetch(c, name, uids))
            except SourceError:
                if len(uids) == 1:
                    raise
                self.prefetch = max(1, len(uids) // 2)
                got = self._call(lambda c: self._fetch(c, name, [uid]))
            self._cache = {(name, u): data for u, data in got.items()}
        data = self._cache.pop((name, uid), None)
        if data is None:
            raise SourceError("gone from the source (expunged during the import)")
        return data, msg

    def _batch(self, name: str, uid: int, size: int, max_size: int) -> list[int]:
        uids, total = [uid], size
        listing = self._listing.get(name, [])
        i = self._index.get((name, uid))
        for u, n in listing[i + 1 :] if i is not None else []:
            if len(uids) >= self.prefetch or total + n > PREFETCH_BYTES or n > max_size:
                break
            uids.append(u)
            total += n
        return uids

    def _fetch(self, c: Any, name: str, uids: list[int]) -> dict[int, bytes]:
        self._select(c, name)
        got = c.fetch(uids, ["BODY.PEEK[]"])
        return {int(u): bytes(v[b"BODY[]"]) for u, v in got.items() if b"BODY[]" in v}

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:  # noqa: BLE001 - closing a connection that may be gone
                self._drop()
            self.client = None
