"""PostgreSQL in-database blobs: rows of the `blobs` table (bytea).

Keys are random and unique (`blobfiles.new_key`), never content hashes. A missing key raises
FileNotFoundError, as the file blob store does. With these blobs a delivery's blob and its
index rows commit in one transaction (`PostgresBackend.blob_in_tx`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhouse.store.blobfiles import new_key
from mailhouse.store.postgres.engine import Engine


class PgBlobStore:
    """`api.BlobStore` in the database; `put` commits before it returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def put(self, data: bytes) -> str:
        key = new_key()
        await self._engine.pool().execute("INSERT INTO blobs(key, data) VALUES ($1, $2)", key, data)
        return key

    async def get(self, key: str) -> bytes:
        data = await self._engine.pool().fetchval("SELECT data FROM blobs WHERE key=$1", key)
        if data is None:
            raise FileNotFoundError(f"blob {key} does not exist")
        return bytes(data)

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self._engine.pool().execute("DELETE FROM blobs WHERE key = ANY($1::text[])", list(keys))

    # ---------------------------------------------------------------- read side (streaming)
    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`api.BlobStore.read_range`: substring() of the bytea, so only the slice is sent."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        row = await self._engine.pool().fetchrow(
            "SELECT substring(data from $2 for $3) AS d FROM blobs WHERE key=$1", key, offset + 1, length
        )
        if row is None:
            raise FileNotFoundError(f"blob {key} does not exist")
        return bytes(row["d"] or b"")
