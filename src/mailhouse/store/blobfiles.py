"""Message blobs as immutable files under one directory (the embedded default).

Invariant (DESIGN.md §Durability): `put` returns only after the file's data and the
directory entry are fsynced, so an index row committed afterwards never points at a
missing or partial file. Files are written to a temporary name and renamed into place:
a crash leaves either nothing or the whole blob. Keys are random and unique (never a
content hash) so deleting one message's blob can never race a new delivery of the
same bytes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Sequence
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
        key = key or new_key()
        p = self.path(key)
        d = p.parent
        if d not in self._made:
            d.mkdir(parents=True, exist_ok=True)
            self._fsync_dir(d.parent)
            self._made.add(d)
        tmp = d / f".{key}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
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
