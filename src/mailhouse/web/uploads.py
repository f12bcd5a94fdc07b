"""Compose attachments on disk, and the outgoing message built from them in a spool file.

Issue 12 item 2: two 30 MB attachments used to take a webmail process from ~100 MB to ~670 MB
(each upload read into memory, base64-encoded by the ``email`` package, serialised, copied).
Now each upload of a compose request is copied — in bounded chunks, in a worker thread — from
Starlette's spooled form file to a private file under ``<data_dir>/webmail-uploads/``, and
``send.build_message_file`` writes the MIME message into a spool file beside them, streaming the
base64 of each attachment from its file. The request's files are removed when it ends
(sent, saved, refused or failed): :class:`RequestUploads` is an async context manager.

Limits (named, documented in the README's security section):

* per request: the attachments' octets ≤ ``max_message_size`` (the message could not be sent
  anyway; ``limits.BodyLimit`` already bounds the request body before it is read);
* per user: octets spooled by that user's compose requests in flight at once ≤
  :func:`user_limit` (``USER_UPLOAD_FACTOR`` × ``max_message_size``), so parallel requests of
  one session (or several sessions of one account) cannot fill the disk.

Invariants: a file is created only below the spool directory, owner-only (0600); the byte
counts are released exactly once per request; nothing here holds an attachment in memory
beyond one :data:`COPY_CHUNK`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

UPLOAD_DIR: Final = "webmail-uploads"
#: Octets copied at a time from the form's spooled file to the upload file.
COPY_CHUNK: Final = 1024 * 1024
#: A user's uploads in flight (all its compose requests together) ≤ this × max_message_size.
USER_UPLOAD_FACTOR: Final = 2


class UploadTooBig(Exception):
    """An upload over the per-request or per-user cap (the page says "message too big")."""


def user_limit(max_message_size: int) -> int:
    return USER_UPLOAD_FACTOR * max_message_size


@dataclass(frozen=True, slots=True)
class SavedUpload:
    path: Path
    filename: str
    content_type: str
    size: int


class UploadSpool:
    """The upload directory of one process and the bytes each user has spooled there now."""

    def __init__(self, root: Path, max_message_size: int) -> None:
        self.root = root
        self.max_message_size = max_message_size
        self._in_use: dict[int, int] = {}

    def request(self, account_id: int) -> RequestUploads:
        return RequestUploads(self, account_id)

    def _reserve(self, account_id: int, n: int) -> None:
        used = self._in_use.get(account_id, 0)
        if used + n > user_limit(self.max_message_size):
            raise UploadTooBig("too many attachments being uploaded at once")
        self._in_use[account_id] = used + n

    def _release(self, account_id: int, n: int) -> None:
        left = self._in_use.get(account_id, 0) - n
        if left > 0:
            self._in_use[account_id] = left
        else:
            self._in_use.pop(account_id, None)

    def new_path(self, suffix: str) -> Path:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.root / f"{secrets.token_hex(12)}{suffix}"


class RequestUploads:
    """The files of one compose request; removed (and their bytes released) on exit."""

    def __init__(self, spool: UploadSpool, account_id: int) -> None:
        self.spool = spool
        self.account_id = account_id
        self.files: list[SavedUpload] = []
        self._paths: list[Path] = []
        self._reserved = 0
        self._total = 0

    async def __aenter__(self) -> RequestUploads:
        return self

    async def __aexit__(self, *exc: object) -> None:
        paths, self._paths = self._paths, []
        self.spool._release(self.account_id, self._reserved)
        self._reserved = 0
        if paths:
            await asyncio.to_thread(_remove, paths)

    def spool_path(self) -> Path:
        """A fresh file name in the spool directory, removed with the request's files."""
        p = self.spool.new_path(".eml")
        self._paths.append(p)
        return p

    async def add(self, src: IO[bytes], filename: str, content_type: str) -> SavedUpload:
        """Copy one upload (the form parser's spooled file) to its own file under the spool."""
        size = src.seek(0, os.SEEK_END)  # the octets received, whatever the part's headers said
        if self._total + size > self.spool.max_message_size:
            raise UploadTooBig("message too big")  # RFC 1870: it could not be sent anyway
        self.spool._reserve(self.account_id, size)
        self._reserved += size
        self._total += size
        path = self.spool.new_path(".att")
        self._paths.append(path)
        await asyncio.to_thread(_copy, src, path)
        saved = SavedUpload(path, filename, content_type, size)
        self.files.append(saved)
        return saved


def _copy(src: IO[bytes], path: Path) -> None:
    src.seek(0)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, COPY_CHUNK)


def _remove(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
