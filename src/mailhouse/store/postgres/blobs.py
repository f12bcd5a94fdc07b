"""PostgreSQL in-database blobs: rows of the `blobs` table (bytea).

Keys are random and unique (`blobfiles.new_key`), never content hashes. A missing key raises
FileNotFoundError, as the file blob store does. With these blobs a delivery's blob and its
index rows commit in one transaction (`PostgresBackend.blob_in_tx`).

`put_file` writes a spooled message in `PUT_CHUNK` pieces (``data || $2`` in one transaction), so
neither this process nor one statement ever carries the whole message.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from mailhouse.store.blobfiles import new_key
from mailhouse.store.postgres.engine import Conn, Engine

#: Octets per statement of `PgBlobStore.put_file` (each append rewrites the value: bigger pieces
#: mean fewer rewrites, smaller ones less memory per statement).
PUT_CHUNK = 8 * 1024 * 1024


class PgBlobStore:
    """`api.BlobStore` in the database; `put` commits before it returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def put(self, data: bytes) -> str:
        key = new_key()
        await self._engine.connection(
            lambda c: c.execute("INSERT INTO blobs(key, data) VALUES ($1, $2)", key, data)
        )
        return key

    async def get(self, key: str) -> bytes:
        data = await self._engine.connection(lambda c: c.fetchval("SELECT data FROM blobs WHERE key=$1", key))
        if data is None:
            raise FileNotFoundError(f"blob {key} does not exist")
        return bytes(data)

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self._engine.connection(
                lambda c: c.execute("DELETE FROM blobs WHERE key = ANY($1::text[])", list(keys))
            )

    # ------------------------------------------------------------ write side: from a file

    async def put_file(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str:
        """PREFIX + LENGTH octets of PATH from OFFSET as a blob, appended in `PUT_CHUNK` pieces."""
        if length is None:
            length = os.stat(path).st_size - offset
        key = new_key()
        size = length

        async def write(conn: Conn) -> None:  # may run again (the engine retries): reads from OFFSET
            with open(path, "rb") as f:
                f.seek(offset)
                first = prefix + await asyncio.to_thread(f.read, min(size, PUT_CHUNK))
                left = size - (len(first) - len(prefix))
                await conn.execute("INSERT INTO blobs(key, data) VALUES ($1, $2)", key, first)
                del first
                while left > 0:
                    piece = await asyncio.to_thread(f.read, min(left, PUT_CHUNK))
                    if not piece:
                        raise OSError(f"{path} ended {left} octets early")
                    left -= len(piece)
                    await conn.execute("UPDATE blobs SET data = data || $2 WHERE key=$1", key, piece)

        # through the engine: a lost connection is StoreUnavailable (451 4.3.0), as for every write
        await self._engine.transaction(write)
        return key

    # ---------------------------------------------------------------- read side (streaming)
    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`api.BlobStore.read_range`: substring() of the bytea, so only the slice is sent."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        row = await self._engine.connection(
            lambda c: c.fetchrow(
                "SELECT substring(data from $2 for $3) AS d FROM blobs WHERE key=$1", key, offset + 1, length
            )
        )
        if row is None:
            raise FileNotFoundError(f"blob {key} does not exist")
        return bytes(row["d"] or b"")
