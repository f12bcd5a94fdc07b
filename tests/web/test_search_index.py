"""Issue 13 §4: the webmail search narrows by the full-text index and finds exactly what the
scan finds (`match_message` on every message), HTML parts included."""

from __future__ import annotations

import random
from pathlib import Path

from mailhouse.message import fts_text
from mailhouse.message.search import SearchLimits
from mailhouse.store import open_store
from mailhouse.store.api import NewMessage
from mailhouse.web import search as websearch
from tests.imapserver.test_fts_query import WORDS, _mail

HTML = (
    b"Subject: html only\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>caf&eacute; ab<!-- a>b -->cd swordfish</p>\r\n"
)


async def test_web_search_indexed_equals_scan(tmp_path: Path) -> None:
    rng = random.Random(7)
    store = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path, indexer=fts_text.extract)
    await store.open()
    try:
        await store.add_domain("example.org")
        acc = (await store.add_account("alice@example.org", "x")).id
        mb = await store.get_mailbox(acc, "INBOX")
        assert mb is not None
        for m in [HTML] + [_mail(rng, i) for i in range(80)]:
            await store.deliver(m, [NewMessage(mb.id, "", 0)])
        recs = await store.list_messages(mb.id)
        raws = {r.uid: await store.blobs.get(r.blob_key) for r in recs}
        queries = ["café", "abcd", "swordfish", "body:fish", "from:zebra", "to:alice", "subject:report sword"]
        queries += [rng.choice(WORDS) + " " + rng.choice(WORDS)[1:4] for _ in range(20)]
        for q in queries:
            want = [
                r.uid
                for r in recs
                if websearch.match_message(raws[r.uid], websearch.terms(q), SearchLimits())
            ]
            got = await websearch.search(store, recs, q, time_budget=60, max_decoded_bytes=50 * 2**20)
            assert [r.uid for r in got.found] == want, q
    finally:
        await store.close()
