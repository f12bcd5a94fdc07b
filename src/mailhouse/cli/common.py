"""What every `mailhouse` sub-command module shares: the handler type and opening the store.

`cli/main.py` builds the parser from the `register(sub)` function of each sub-command module
(`cli/queue.py`, `cli/mail.py`, `cli/store.py`, `cli/ban.py`); those import only this module, never
`cli/main.py`, so the package has no import cycle.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mailhouse import config as config_mod
from mailhouse.message import fts_text
from mailhouse.store import open_store

Handler = Callable[[argparse.Namespace, config_mod.Config], Awaitable[int]]


class NoStore(Exception):
    """The configured embedded store does not exist, and this command may not create one."""


def missing_store(cfg: config_mod.Config) -> str | None:
    """Why CFG's store is not there yet (an embedded SQLite file that does not exist), or None."""
    if not cfg.store.startswith("sqlite://"):
        return None  # PostgreSQL: the server says itself whether the database exists
    db = Path(cfg.store.removeprefix("sqlite://"))
    if db.exists():
        return None
    where = f"configuration {cfg.source_path}" if cfg.source_path != "<defaults>" else "built-in defaults"
    return (
        f"no Mailhouse store at {db} ({where}). If the server runs with a configuration file, pass it"
        " with --config or $MAILHOUSE_CONFIG (or put it at /etc/mailhouse/mailhouse.toml); to start a"
        " new one here, run `mailhouse setup` or `mailhouse quickstart ADDRESS`"
    )


async def with_store(
    cfg: config_mod.Config, fn: Callable[[Any], Awaitable[int]], *, create: bool = False
) -> int:
    """Run FN with the configured store open, and close it afterwards. Only CREATE (serve,
    setup, quickstart) may make a new store: anything else run from the wrong directory or
    with the wrong config would silently work on an empty one."""
    if not create and (why := missing_store(cfg)):
        raise NoStore(why)
    store = open_store(cfg.store, cfg.data_dir, indexer=fts_text.extract)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()
