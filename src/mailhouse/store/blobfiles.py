"""Message blobs as immutable files under one directory (the embedded default).

Invariant (DESIGN.md §Durability): `put` returns only after the file's data and the
directory entry are fsynced, so an index row committed afterwards never points at a
missing or partial file. Files are written to a temporary name and renamed into place:
a crash leaves either nothing or the whole blob. Keys are random and unique (never a
content hash) so deleting one message's blob can never race a new delivery of the
same bytes.
`put_file` makes a blob from a spooled file (``store.spool``): the prefix is written, the rest
copied by the kernel (``copy_file_range``), so no message passes through memory whole.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def new_key() -> str:
    """A unique, roughly time-ordered blob key: 12 hex of milliseconds + 16 random hex."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()

    def path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"bad blob key {key!r}")
        return self.root / key[-2:] / key

    def put_sync(self, data: bytes, key: str | None = None) -> str:
        def fill(fd: int) -> None:
            _write_all(fd, data)

        return self._put_durably(key or new_key(), fill)

    def _put_durably(self, key: str, fill: Callable[[int], None]) -> str:
        """Write KEY's file through FILL(fd) into a temporary name, fsync it, rename it into place
        and fsync the directory (DESIGN.md §Durability: on disk before it is referenced)."""
        p = self.path(key)
        d = p.parent
        if d not in self._made:
            d.mkdir(parents=True, exist_ok=True)
            self._fsync_dir(d.parent)
            self._made.add(d)
        tmp = d / f".{key}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            fill(fd)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, p)
        self._fsync_dir(d)
        return key

    @staticmethod
    def _fsync_dir(d: Path) -> None:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get_sync(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self.put_sync, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, key)

    async def delete(self, keys: Sequence[str]) -> None:
        def _rm() -> None:
            for k in keys:
                try:
                    self.path(k).unlink()
                except FileNotFoundError:
                    pass

        if keys:
            await asyncio.to_thread(_rm)

    # ------------------------------------------------------------ write side: from a file

    def put_file_sync(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str:
        """`put_sync` of PREFIX + LENGTH octets of PATH from OFFSET, copied in the kernel."""
        src = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(src).st_size - offset if length is None else length

            def fill(fd: int) -> None:
                _write_all(fd, prefix)
                copy_range(src, fd, offset, size)

            return self._put_durably(new_key(), fill)
        finally:
            os.close(src)

    async def put_file(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str:
        return await asyncio.to_thread(self.put_file_sync, path, prefix=prefix, offset=offset, length=length)

    # ---------------------------------------------------------------- read side (streaming)
    def read_range_sync(self, key: str, offset: int, length: int) -> bytes:
        """Octets OFFSET..OFFSET+LENGTH-1 of a blob (fewer at its end): one seek and one read."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        with open(self.path(key), "rb", buffering=0) as f:
            f.seek(offset)
            out = bytearray()
            while len(out) < length:
                piece = f.read(length - len(out))
                if not piece:
                    break
                out += piece
            return bytes(out)

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self.read_range_sync, key, offset, length)


#: Octets per copy step (bounds the user-space buffer of the read/write fallback).
COPY_CHUNK = 1024 * 1024


def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Append LENGTH octets of SRC from OFFSET to DST (at its current position): ``copy_file_range``
    (in the kernel; a reflink on file systems that can), else bounded reads and writes."""
    left = length
    pos = offset
    use_cfr = hasattr(os, "copy_file_range")
    while left > 0:
        if use_cfr:
            try:
                n = os.copy_file_range(src, dst, min(left, 1 << 30), pos)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                use_cfr = False
                continue
        else:
            data = os.pread(src, min(left, COPY_CHUNK), pos)
            view = memoryview(data)
            n = len(data)
            while view:
                w = os.write(dst, view)
                view = view[w:]
        if n == 0:
            raise OSError(f"source ended {left} octets early")
        pos += n
        left -= n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
