"""What every `mailhouse` sub-command module shares: the handler type and opening the store.

`cli/main.py` builds the parser from the `register(sub)` function of each sub-command module
(`cli/queue.py`, `cli/mail.py`, `cli/store.py`, `cli/ban.py`); those import only this module, never
`cli/main.py`, so the package has no import cycle.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from mailhouse import config as config_mod
from mailhouse.message import fts_text
from mailhouse.store import open_store

Handler = Callable[[argparse.Namespace, config_mod.Config], Awaitable[int]]


async def with_store(cfg: config_mod.Config, fn: Callable[[Any], Awaitable[int]]) -> int:
    """Run FN with the configured store open, and close it afterwards."""
    store = open_store(cfg.store, cfg.data_dir, indexer=fts_text.extract)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()
