"""SQLite primitives for spam learning (Bayes tokens, training memory, user lists); the rules are in
`store/spam.py`.

Part of `SqliteTx` (`store/sqlite/backend.py`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

CHUNK = 500  # host parameters per IN (...) query, well below SQLite's limit


class SpamTx:
    c: sqlite3.Connection

    async def add_spam_tokens(self, account_id: int, deltas: Sequence[tuple[int, int, int]]) -> None:
        self.c.executemany(
            "INSERT INTO spam_tokens(account_id, token, spam, ham) VALUES (?, ?, max(?, 0), max(?, 0))"
            " ON CONFLICT(account_id, token) DO UPDATE SET spam = max(spam + ?, 0), ham = max(ham + ?, 0)",
            [(account_id, t, ds, dh, ds, dh) for t, ds, dh in deltas],
        )
        # tokens untrained down to nothing are dropped (only those of this batch: no scan)
        self.c.executemany(
            "DELETE FROM spam_tokens WHERE account_id = ? AND token = ? AND spam = 0 AND ham = 0",
            [(account_id, t) for t, ds, dh in deltas if ds < 0 or dh < 0],
        )

    async def spam_tokens(self, account_id: int, tokens: Sequence[int]) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        toks = list(tokens)
        for i in range(0, len(toks), CHUNK):
            part = toks[i : i + CHUNK]
            q = ",".join("?" * len(part))
            for t, sp, hm in self.c.execute(
                f"SELECT token, spam, ham FROM spam_tokens WHERE account_id = ? AND token IN ({q})",
                (account_id, *part),
            ):
                out[int(t)] = (int(sp), int(hm))
        return out

    async def add_spam_totals(self, account_id: int, d_spam: int, d_ham: int) -> None:
        self.c.execute(
            "INSERT INTO spam_totals(account_id, spam, ham) VALUES (?, max(?, 0), max(?, 0))"
            " ON CONFLICT(account_id) DO UPDATE SET spam = max(spam + ?, 0), ham = max(ham + ?, 0)",
            (account_id, d_spam, d_ham, d_spam, d_ham),
        )

    async def spam_totals(self, account_id: int) -> tuple[int, int]:
        row = self.c.execute(
            "SELECT spam, ham FROM spam_totals WHERE account_id = ?", (account_id,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def spam_trained(self, account_id: int, key: str) -> str | None:
        row = self.c.execute(
            "SELECT kind FROM spam_trained WHERE account_id = ? AND key = ?", (account_id, key)
        ).fetchone()
        return str(row[0]) if row else None

    async def set_spam_trained(self, account_id: int, key: str, kind: str | None) -> None:
        if kind is None:
            self.c.execute("DELETE FROM spam_trained WHERE account_id = ? AND key = ?", (account_id, key))
        else:
            self.c.execute(
                "INSERT OR REPLACE INTO spam_trained(account_id, key, kind) VALUES (?, ?, ?)",
                (account_id, key, kind),
            )

    async def spam_list_entries(self, account_id: int) -> list[tuple[str, str]]:
        rows = self.c.execute(
            "SELECT entry, kind FROM spam_lists WHERE account_id = ? ORDER BY entry", (account_id,)
        ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    async def spam_list_kind(self, account_id: int, entries: Sequence[str]) -> dict[str, str]:
        if not entries:
            return {}
        q = ",".join("?" * len(entries))
        rows = self.c.execute(
            f"SELECT entry, kind FROM spam_lists WHERE account_id = ? AND entry IN ({q})",
            (account_id, *entries),
        ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    async def set_spam_list_entry(self, account_id: int, entry: str, kind: str | None) -> bool:
        if kind is None:
            sql, args = "DELETE FROM spam_lists WHERE account_id = ? AND entry = ?", (account_id, entry)
            return self.c.execute(sql, args).rowcount > 0
        cur = self.c.execute(
            "INSERT INTO spam_lists(account_id, entry, kind) VALUES (?, ?, ?)"
            " ON CONFLICT(account_id, entry) DO UPDATE SET kind = excluded.kind WHERE kind <> excluded.kind",
            (account_id, entry, kind),
        )
        return cur.rowcount > 0
