"""`mailhouse index backfill` and `mailhouse index rebuild [USER]`: the full-text index (issue 13 §4).

`backfill` indexes every message that has no index document yet (delivered before the index
existed, copied with `mailhouse store copy`, or appended with a client that bypassed it);
`rebuild` first drops the documents of USER's messages (all of them without USER) and then
backfills. Both work while `mailhouse serve` runs: until a message is indexed every search
scans it (`store/fts.py`), so results never depend on how far the command got, and a killed
run is resumed by running it again. Extraction (`message/fts_text.extract`) runs in worker
processes (``--jobs``); progress goes to stderr (`cli/store.Progress`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.cli.store import Progress
from mailhouse.message import fts_text
from mailhouse.store.api import DocState, IndexDoc, NotFound, Store
from mailhouse.store.fts import MAX_INDEX_MESSAGE

BATCH = 200  # messages read, indexed and committed per step


async def backfill(store: Store, progress: Progress, jobs: int) -> int:
    """Index every blob without a document; returns the number of documents written."""
    keys: list[str] = []
    while True:  # the backlog first (keys only), so the bar has a total
        got = await store.index_backlog(10_000, keys[-1] if keys else "")
        if not got:
            break
        keys += got
    progress.begin(len(keys), 0)
    done = 0
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=max(jobs, 1)) as pool:
        for i in range(0, len(keys), BATCH):
            batch = keys[i : i + BATCH]
            docs: list[tuple[str, IndexDoc]] = []
            raws: list[tuple[str, bytes]] = []
            nbytes = 0
            for k in batch:
                try:
                    raw = await store.blobs.get(k)
                except (FileNotFoundError, NotFound):
                    continue  # expunged meanwhile
                nbytes += len(raw)
                if len(raw) > MAX_INDEX_MESSAGE:
                    docs.append((k, IndexDoc(DocState.FAILED)))
                else:
                    raws.append((k, raw))
            futs = [loop.run_in_executor(pool, fts_text.extract, raw) for _, raw in raws]
            docs += list(zip([k for k, _ in raws], await asyncio.gather(*futs), strict=True))
            done += await store.add_index_docs(docs)
            progress.advance(len(batch), nbytes)
    progress.close()
    return done


async def cmd_index(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        if args.action == "rebuild":
            account_id: int | None = None
            if args.user:
                acc = await store.get_account(args.user)
                if acc is None:
                    print(f"mailhouse: no such user {args.user}")
                    return 1
                account_id = acc.id
            dropped = await store.clear_index(account_id)
            print(f"dropped {dropped} index document(s)")
        elif args.user:
            print("mailhouse: index backfill takes no USER (it indexes every message not indexed yet)")
            return 2
        n = await backfill(store, Progress(0, 0, enabled=not args.no_progress), args.jobs)
        print(f"indexed {n} message blob(s)")
        return 0

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="the full-text search index: backfill, rebuild [USER]")
    p.add_argument("action", choices=["backfill", "rebuild"])
    p.add_argument("user", nargs="?", help="rebuild only this user's messages (rebuild)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="extraction processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(fn=cmd_index)
