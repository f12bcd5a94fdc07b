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
beyond one :data:`COPY_CHUNK`. A file's name starts with the id of the process that made it
(``<pid>.<random><suffix>``), so :func:`remove_stale`, run when an :class:`UploadSpool` is
made (process start-up), removes what a crashed process left without touching the files of
live workers sharing the directory (as ``store.spool.remove_stale`` for the SMTP spool).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

log = logging.getLogger(__name__)

UPLOAD_DIR: Final = "webmail-uploads"
#: The suffixes of what a request leaves here: attachments and the message built from them.
SUFFIXES: Final = (".att", ".eml")
#: Files named without a process id (made before names carried one) older than this are stale.
UNNAMED_STALE_AGE: Final = 3600.0
#: When this process loaded the module: a file named with our own process id but older than
#: this is from an earlier process that had the same id (a container's pid 1 after a restart).
_LOADED = time.time()
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
        stale = remove_stale(root)  # start-up: what a crashed process left behind
        if stale:
            log.info("removed %d webmail upload files left by stopped processes", stale)

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
        return self.root / f"{os.getpid()}.{secrets.token_hex(12)}{suffix}"


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


_NAME = re.compile(r"(?:(\d+)\.)?[0-9a-f]{24}\.(?:att|eml)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists under another user: not ours to judge
    return True


def remove_stale(root: Path, *, now: float | None = None) -> int:
    """Remove the upload and message files in ROOT whose process no longer runs; how many.

    Only names this module makes are considered; one without a process id (an older version's)
    goes once it is `UNNAMED_STALE_AGE` old. Blocking (a directory listing): start-up only."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return 0
    now = time.time() if now is None else now
    removed = 0
    for name in names:
        m = _NAME.fullmatch(name)
        if m is None:
            continue
        path = root / name
        try:
            if m.group(1) is not None:
                pid = int(m.group(1))
                if pid == os.getpid():
                    if path.stat().st_mtime >= _LOADED:
                        continue  # this process's own (another UploadSpool on the same directory)
                elif _pid_alive(pid):
                    continue
            elif now - path.stat().st_mtime < UNNAMED_STALE_AGE:
                continue
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
