"""PostgreSQL primitives of the full-text index (`store/fts.py`): a tsvector per blob + GIN.

`fts_docs(blob_key, state, terms tsvector)` with a GIN index on `terms`. The terms come from
`message/fts_text.py` already tokenised, case-folded and tagged, so they enter the tsvector
verbatim through `array_to_tsvector` (no text search configuration, hence no stemming and no
stop words: the effect of the 'simple' configuration, without its parser re-splitting a term);
queries are built as tsquery text of quoted lexemes (``'bword':*`` for a prefix). Rows only.
Part of `PgTx` (`store/postgres/backend.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhouse.store.api import DocState, FtsQuery, IndexDoc
from mailhouse.store.postgres.engine import Conn

GENERATION = "fts_generation"


def tsquery(query: FtsQuery) -> str:
    """The tsquery text of QUERY (terms are letters/digits: single quotes are enough)."""
    parts = []
    for t in query.terms:
        star = ":*" if t.prefix else ""
        alts = [f"'{tag.value}{t.word}'{star}" for tag in t.tags]
        parts.append(alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")")
    return " & ".join(parts)


class FtsTx:
    c: Conn

    async def fts_insert(self, docs: Sequence[tuple[str, IndexDoc]]) -> int:
        n = 0
        for key, doc in docs:
            terms = doc.terms.split() if doc.state is DocState.INDEXED else None
            got = await self.c.fetchval(
                "INSERT INTO fts_docs(blob_key, state, terms) VALUES ($1, $2,"
                " CASE WHEN $3::text[] IS NULL THEN NULL ELSE array_to_tsvector($3::text[]) END)"
                " ON CONFLICT (blob_key) DO NOTHING RETURNING 1",
                key,
                int(doc.state),
                terms,
            )
            n += got is not None
        return n

    async def fts_delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self.c.execute("DELETE FROM fts_docs WHERE blob_key = ANY($1::text[])", list(keys))

    async def fts_referenced(self, keys: Sequence[str]) -> list[str]:
        rows = await self.c.fetch(
            "SELECT k FROM unnest($1::text[]) AS k WHERE EXISTS (SELECT 1 FROM messages WHERE blob_key = k)",
            list(keys),
        )
        return [str(r[0]) for r in rows]

    async def fts_match(self, mailbox_id: int, query: FtsQuery) -> list[int]:
        rows = await self.c.fetch(
            "SELECT m.uid FROM fts_docs d JOIN messages m ON m.blob_key = d.blob_key"
            " WHERE d.terms @@ $1::tsquery AND d.state = $2 AND m.mailbox_id = $3",
            tsquery(query),
            int(DocState.INDEXED),
            mailbox_id,
        )
        return [int(r[0]) for r in rows]

    async def fts_unindexed(self, mailbox_id: int, since_uid: int = 0) -> list[int]:
        rows = await self.c.fetch(
            "SELECT uid FROM messages m WHERE mailbox_id = $1 AND uid >= $3 AND NOT EXISTS"
            " (SELECT 1 FROM fts_docs d WHERE d.blob_key = m.blob_key AND d.state = $2)",
            mailbox_id,
            int(DocState.INDEXED),
            since_uid,
        )
        return [int(r[0]) for r in rows]

    async def fts_backlog(self, after: str, limit: int) -> list[str]:
        rows = await self.c.fetch(
            "SELECT DISTINCT blob_key FROM messages m WHERE blob_key > $1 AND NOT EXISTS"
            " (SELECT 1 FROM fts_docs d WHERE d.blob_key = m.blob_key) ORDER BY blob_key LIMIT $2",
            after,
            limit,
        )
        return [str(r[0]) for r in rows]

    async def fts_clear(self, account_id: int | None) -> int:
        if account_id is None:
            status = await self.c.execute("DELETE FROM fts_docs")
        else:
            status = await self.c.execute(
                "DELETE FROM fts_docs WHERE blob_key IN (SELECT m.blob_key FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = $1)",
                account_id,
            )
        return int(str(status).rsplit(" ", 1)[-1] or 0)

    async def fts_generation(self) -> int:
        got = await self.c.fetchval("SELECT value FROM counters WHERE name = $1", GENERATION)
        return int(got or 0)

    async def fts_bump(self) -> None:
        await self.c.execute(
            "INSERT INTO counters(name, value) VALUES ($1, 1)"
            " ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
            GENERATION,
        )
