"""Storage: `api` (the interface) and backends (`sqlite`, `postgres`); `open_store(url)` picks one."""

from __future__ import annotations

from pathlib import Path

from mailhouse.store.api import Store
from mailhouse.store.fts import Indexer


def open_store(url: str, data_dir: Path, indexer: Indexer | None = None) -> Store:
    """Return an (unopened) store for URL: sqlite:///path or postgresql://…

    INDEXER (`message.fts_text.extract`) makes the full-text index documents at delivery."""
    if url.startswith("sqlite://"):
        from mailhouse.store.sqlite.backend import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite://")), data_dir / "blobs", indexer=indexer)
    if url.startswith(("postgresql://", "postgres://")):
        from mailhouse.store.postgres.backend import PostgresStore  # type: ignore[import-not-found,unused-ignore]

        return PostgresStore(url, data_dir, indexer)  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(f"unknown store url {url!r}")


async def schema_versions(url: str) -> tuple[int | None, list[str]]:
    """(the version the database at URL is at — None: no store yet —, every migration this
    Mailhouse knows, in order): `mailhouse migrate --dry-run` shows the difference."""
    if url.startswith("sqlite://"):
        import asyncio

        from mailhouse.store.sqlite import engine as sqlite_engine
        from mailhouse.store.sqlite.schema import MIGRATIONS as SQLITE

        version = await asyncio.to_thread(sqlite_engine.read_version, Path(url.removeprefix("sqlite://")))
        return version, [m if isinstance(m, str) else ";\n".join(m) for m in SQLITE]
    if url.startswith(("postgresql://", "postgres://")):
        from mailhouse.store.postgres import engine as pg_engine  # type: ignore[import-not-found,unused-ignore]
        from mailhouse.store.postgres.schema import MIGRATIONS as PG  # type: ignore[import-not-found,unused-ignore]

        return await pg_engine.read_version(url), list(PG)
    raise ValueError(f"unknown store url {url!r}")
