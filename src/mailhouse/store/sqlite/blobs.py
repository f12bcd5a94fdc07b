"""SQLite blob placement: small blobs inline in the `blobs` table, large ones as files.

A small message (≤ `INLINE_BLOB_MAX`) is written in the same transaction as its index rows, so
one group-committed WAL fsync makes many deliveries durable at once; a file costs two journal
commits (file and directory fsync) of its own. Inline keys start with "i"; the others name
immutable files (`store.blobfiles.FileBlobStore`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mailhouse.store.blobfiles import FileBlobStore, new_key
from mailhouse.store.sqlite.engine import Engine

INLINE_BLOB_MAX = 512 * 1024  # messages up to this size live in the database: one group-committed fsync


def is_inline(key: str) -> bool:
    """Blob keys of messages kept inline in the ``blobs`` table start with "i"."""
    return key.startswith("i")


def new_inline_key() -> str:
    return "i" + new_key()


class HybridBlobStore:
    """`api.BlobStore`: inline rows for small blobs, files for large ones."""

    def __init__(self, engine: Engine, files: FileBlobStore) -> None:
        self.engine = engine
        self.files = files

    async def put(self, data: bytes) -> str:
        if len(data) > INLINE_BLOB_MAX:
            return await self.files.put(data)
        key = new_inline_key()
        await self.engine.write(lambda c: c.execute("INSERT INTO blobs VALUES (?, ?)", (key, data)))
        return key

    async def get(self, key: str) -> bytes:
        if not is_inline(key):
            return await self.files.get(key)
        row = await self.engine.read(
            lambda c: c.execute("SELECT data FROM blobs WHERE key=?", (key,)).fetchone()
        )
        if row is None:
            raise FileNotFoundError(key)
        return bytes(row[0])

    def local_path(self, key: str) -> Path | None:
        """The file holding blob KEY, or None for an inline one (an optional extension of
        ``BlobStore``: CPU-pool workers read big blobs by path instead of through a pipe)."""
        return None if is_inline(key) else self.files.path(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Several blobs with one hop to a reader thread for the inline ones; missing keys are left out.

        An optional extension of ``BlobStore`` (POP3 reads ahead with it); ``get`` stays the contract.
        """
        out: dict[str, bytes] = {}
        inline = [k for k in keys if is_inline(k)]
        if inline:

            def fn(c: sqlite3.Connection) -> dict[str, bytes]:
                found: dict[str, bytes] = {}
                for i in range(0, len(inline), 500):  # stay below SQLITE_MAX_VARIABLE_NUMBER
                    part = inline[i : i + 500]
                    sql = f"SELECT key, data FROM blobs WHERE key IN ({','.join('?' * len(part))})"
                    for k, d in c.execute(sql, part):
                        found[k] = bytes(d)
                return found

            out.update(await self.engine.read(fn))
        for k in keys:
            if not is_inline(k):
                try:
                    out[k] = await self.files.get(k)
                except FileNotFoundError:
                    pass
        return out

    @staticmethod
    def _delete_inline(c: sqlite3.Connection, keys: list[tuple[str]]) -> None:
        # One execute per key rather than executemany: CPython 3.11's executemany can fail
        # with "bad parameter or other API misuse" when group commit runs it right after
        # other jobs on the same connection (seen under concurrent IMAP EXPUNGE load).
        for key in keys:
            c.execute("DELETE FROM blobs WHERE key=?", key)

    async def delete(self, keys: Sequence[str]) -> None:
        inline = [(k,) for k in keys if is_inline(k)]
        if inline:
            await self.engine.write(lambda c: self._delete_inline(c, inline))
        await self.files.delete([k for k in keys if not is_inline(k)])

    # ------------------------------------------------------------ write side: from a file

    async def put_file(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str:
        """A spooled message as a blob: inline when small (read whole: ≤ `INLINE_BLOB_MAX`), else a file."""
        if length is None:
            length = os.stat(path).st_size - offset
        if len(prefix) + length > INLINE_BLOB_MAX:
            return await self.files.put_file(path, prefix=prefix, offset=offset, length=length)
        with open(path, "rb") as f:
            f.seek(offset)
            data = prefix + f.read(length)
        return await self.put(data)

    # ---------------------------------------------------------------- read side (streaming)
    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`api.BlobStore.read_range`: a slice of the file, or substr() of the inline row."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        if not is_inline(key):
            return await self.files.read_range(key, offset, length)
        row = await self.engine.read(
            lambda c: c.execute(
                "SELECT substr(data, ?, ?) FROM blobs WHERE key=?", (offset + 1, length, key)
            ).fetchone()
        )
        if row is None:
            raise FileNotFoundError(key)
        return bytes(row[0] or b"")
