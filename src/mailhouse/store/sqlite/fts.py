"""SQLite primitives of the full-text index (`store/fts.py`): FTS5, rows only.

`fts_docs` maps a blob key to a document id and state; `fts_terms` is a contentless FTS5 table
(`detail=none`: no positions, the smallest index) whose rowid is the document id. The terms are
written by `message/fts_text.py` as space-separated runs of letters/digits behind a tag letter,
so the `ascii` tokenizer (ASCII letters/digits and every non-ASCII character are word
characters) keeps each term as it is. Contentless rows cannot be deleted by rowid on this
SQLite (3.40, no ``contentless_delete``): a freed blob's `fts_docs` row goes, its postings stay
until `mailhouse index rebuild`, and every lookup joins `fts_docs` (ids are AUTOINCREMENT, never
reused). Part of `SqliteTx` (`store/sqlite/backend.py`).

FTS5 keeps a transaction's new postings in memory and writes them out as a segment whenever they
exceed its ``hashsize`` (default 1 MiB), each flush triggering merge work: indexing a batch of
messages (``mailhouse index backfill``, an import) spent 2/3 of its time there. `tune` raises it
to `HASHSIZE` once per database (it is FTS5's persistent ``fts_terms_config``): memory per writing
transaction stays bounded by it, small transactions (one delivery) are unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from mailhouse.store.api import DocState, FtsQuery, IndexDoc

GENERATION = "fts_generation"
HASHSIZE = 8 << 20  # octets of pending postings before FTS5 writes a segment (measured: 4-32 MiB alike)


def tune(c: sqlite3.Connection) -> None:
    """Set FTS5's ``hashsize`` to `HASHSIZE` (https://sqlite.org/fts5.html: "The hashsize Configuration Option"), when it differs."""
    row = c.execute("SELECT v FROM fts_terms_config WHERE k = 'hashsize'").fetchone()
    if row is None or row[0] != HASHSIZE:
        c.execute("INSERT INTO fts_terms(fts_terms, rank) VALUES ('hashsize', ?)", (HASHSIZE,))


def match_expr(query: FtsQuery) -> str:
    """The FTS5 MATCH expression of QUERY (terms are letters/digits: quoting is enough)."""
    parts = []
    for t in query.terms:
        star = "*" if t.prefix else ""
        alts = [f'"{tag.value}{t.word}"{star}' for tag in t.tags]
        parts.append(alts[0] if len(alts) == 1 else "(" + " OR ".join(alts) + ")")
    return " AND ".join(parts)


class FtsTx:
    c: sqlite3.Connection

    async def fts_insert(self, docs: Sequence[tuple[str, IndexDoc]]) -> int:
        n = 0
        for key, doc in docs:
            cur = self.c.execute(
                "INSERT OR IGNORE INTO fts_docs(blob_key, state) VALUES (?, ?)", (key, int(doc.state))
            )
            if cur.rowcount <= 0:
                continue
            n += 1
            if doc.state is DocState.INDEXED and doc.terms:
                self.c.execute(
                    "INSERT INTO fts_terms(rowid, terms) VALUES (?, ?)", (cur.lastrowid, doc.terms)
                )
        return n

    async def fts_delete(self, keys: Sequence[str]) -> None:
        if keys:
            self.c.execute(
                "DELETE FROM fts_docs WHERE blob_key IN (SELECT value FROM json_each(?))",
                (json.dumps(list(keys)),),
            )

    async def fts_referenced(self, keys: Sequence[str]) -> list[str]:
        return [
            str(r[0])
            for r in self.c.execute(
                "SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM messages WHERE blob_key=value)",
                (json.dumps(list(keys)),),
            ).fetchall()
        ]

    async def fts_match(self, mailbox_id: int, query: FtsQuery) -> list[int]:
        rows = self.c.execute(
            # CROSS JOIN fixes the order: the FTS5 match once, then documents by id and messages by
            # blob key (left to itself the planner walks the mailbox and re-runs the MATCH per row)
            "SELECT m.uid FROM fts_terms f CROSS JOIN fts_docs d CROSS JOIN messages m"
            " WHERE fts_terms MATCH ? AND d.id = f.rowid AND d.state = ? AND m.blob_key = d.blob_key"
            " AND m.mailbox_id = ?",
            (match_expr(query), int(DocState.INDEXED), mailbox_id),
        ).fetchall()
        return [int(r[0]) for r in rows]

    async def fts_unindexed(self, mailbox_id: int, since_uid: int = 0) -> list[int]:
        rows = self.c.execute(
            "SELECT uid FROM messages m WHERE mailbox_id = ? AND uid >= ? AND NOT EXISTS"
            " (SELECT 1 FROM fts_docs d WHERE d.blob_key = m.blob_key AND d.state = ?)",
            (mailbox_id, since_uid, int(DocState.INDEXED)),
        ).fetchall()
        return [int(r[0]) for r in rows]

    async def fts_doc_uids(self, mailbox_id: int, since_uid: int = 0) -> list[tuple[int, int | None]]:
        rows = self.c.execute(
            "SELECT m.uid, d.id FROM messages m LEFT JOIN fts_docs d ON d.blob_key = m.blob_key AND d.state = ?"
            " WHERE m.mailbox_id = ? AND m.uid >= ?",
            (int(DocState.INDEXED), mailbox_id, since_uid),
        ).fetchall()
        return [(int(u), None if d is None else int(d)) for u, d in rows]

    async def fts_match_docs(self, query: FtsQuery) -> list[int]:
        # the FTS5 match alone, no join (ids of freed documents included: their postings stay
        # until a rebuild; the caller's id -> UID map has no entry for them)
        # row by row, not fetchall: each row's tuple is freed at once (30,000 live tuples would
        # start the cyclic garbage collector's passes over the whole process)
        rows = self.c.execute("SELECT rowid FROM fts_terms WHERE fts_terms MATCH ?", (match_expr(query),))
        return [r for (r,) in rows]

    async def fts_backlog(self, after: str, limit: int) -> list[str]:
        rows = self.c.execute(  # index messages_blob, in key order
            "SELECT DISTINCT blob_key FROM messages m WHERE blob_key > ? AND NOT EXISTS"
            " (SELECT 1 FROM fts_docs d WHERE d.blob_key = m.blob_key) ORDER BY blob_key LIMIT ?",
            (after, limit),
        ).fetchall()
        return [str(r[0]) for r in rows]

    async def fts_clear(self, account_id: int | None) -> int:
        if account_id is None:
            n = self.c.execute("DELETE FROM fts_docs").rowcount
            self.c.execute("INSERT INTO fts_terms(fts_terms) VALUES ('delete-all')")
            return max(n, 0)
        return max(
            self.c.execute(
                "DELETE FROM fts_docs WHERE blob_key IN (SELECT m.blob_key FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = ?)",
                (account_id,),
            ).rowcount,
            0,
        )

    async def fts_generation(self) -> int:
        row = self.c.execute("SELECT value FROM meta WHERE key = ?", (GENERATION,)).fetchone()
        return int(row[0]) if row else 0

    async def fts_bump(self) -> None:
        self.c.execute(
            "INSERT INTO meta VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            (GENERATION,),
        )
