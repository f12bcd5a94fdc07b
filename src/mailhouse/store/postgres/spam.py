"""PostgreSQL primitives for spam learning (Bayes tokens, training memory, user lists); the rules are
in `store/spam.py`.

Part of `PgTx` (`store/postgres/backend.py`). Token batches go in one statement each over arrays
(`unnest`), in token order so concurrent trainings of one account lock rows in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhouse.store.postgres.engine import Conn


def _count(status: str) -> int:
    return int(status.rpartition(" ")[2])


class SpamTx:
    c: Conn

    async def add_spam_tokens(self, account_id: int, deltas: Sequence[tuple[int, int, int]]) -> None:
        if not deltas:
            return
        rows = sorted(deltas)
        toks, ds, dh = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        await self.c.execute(
            "WITH d(t, s, h) AS (SELECT * FROM unnest($2::bigint[], $3::int[], $4::int[]))"
            " INSERT INTO spam_tokens(account_id, token, spam, ham)"
            " SELECT $1, t, greatest(s, 0), greatest(h, 0) FROM d"
            " ON CONFLICT (account_id, token) DO UPDATE SET"
            " spam = greatest(spam_tokens.spam + (SELECT s FROM d WHERE d.t = EXCLUDED.token), 0),"
            " ham = greatest(spam_tokens.ham + (SELECT h FROM d WHERE d.t = EXCLUDED.token), 0)",
            account_id,
            toks,
            ds,
            dh,
        )
        gone = [t for t, s, h in rows if s < 0 or h < 0]
        if gone:
            await self.c.execute(
                "DELETE FROM spam_tokens WHERE account_id = $1 AND token = ANY($2::bigint[])"
                " AND spam = 0 AND ham = 0",
                account_id,
                gone,
            )

    async def spam_tokens(self, account_id: int, tokens: Sequence[int]) -> dict[int, tuple[int, int]]:
        rows = await self.c.fetch(
            "SELECT token, spam, ham FROM spam_tokens WHERE account_id = $1 AND token = ANY($2::bigint[])",
            account_id,
            list(tokens),
        )
        return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}

    async def add_spam_totals(self, account_id: int, d_spam: int, d_ham: int) -> None:
        await self.c.execute(
            "INSERT INTO spam_totals(account_id, spam, ham) VALUES ($1, greatest($2::int, 0), greatest($3::int, 0))"
            " ON CONFLICT (account_id) DO UPDATE SET spam = greatest(spam_totals.spam + $2::int, 0),"
            " ham = greatest(spam_totals.ham + $3::int, 0)",
            account_id,
            d_spam,
            d_ham,
        )

    async def spam_totals(self, account_id: int) -> tuple[int, int]:
        r = await self.c.fetchrow("SELECT spam, ham FROM spam_totals WHERE account_id = $1", account_id)
        return (int(r[0]), int(r[1])) if r else (0, 0)

    async def spam_trained(self, account_id: int, key: str) -> str | None:
        v = await self.c.fetchval(
            "SELECT kind FROM spam_trained WHERE account_id = $1 AND key = $2", account_id, key
        )
        return None if v is None else str(v)

    async def set_spam_trained(self, account_id: int, key: str, kind: str | None) -> None:
        if kind is None:
            await self.c.execute(
                "DELETE FROM spam_trained WHERE account_id = $1 AND key = $2", account_id, key
            )
            return
        await self.c.execute(
            "INSERT INTO spam_trained(account_id, key, kind) VALUES ($1, $2, $3)"
            " ON CONFLICT (account_id, key) DO UPDATE SET kind = EXCLUDED.kind",
            account_id,
            key,
            kind,
        )

    async def spam_list_entries(self, account_id: int) -> list[tuple[str, str]]:
        rows = await self.c.fetch(
            "SELECT entry, kind FROM spam_lists WHERE account_id = $1 ORDER BY entry", account_id
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def spam_list_kind(self, account_id: int, entries: Sequence[str]) -> dict[str, str]:
        rows = await self.c.fetch(
            "SELECT entry, kind FROM spam_lists WHERE account_id = $1 AND entry = ANY($2::text[])",
            account_id,
            list(entries),
        )
        return {str(r[0]): str(r[1]) for r in rows}

    async def set_spam_list_entry(self, account_id: int, entry: str, kind: str | None) -> bool:
        if kind is None:
            st = await self.c.execute(
                "DELETE FROM spam_lists WHERE account_id = $1 AND entry = $2", account_id, entry
            )
            return _count(st) > 0
        st = await self.c.execute(
            "INSERT INTO spam_lists(account_id, entry, kind) VALUES ($1, $2, $3)"
            " ON CONFLICT (account_id, entry) DO UPDATE SET kind = EXCLUDED.kind"
            " WHERE spam_lists.kind <> EXCLUDED.kind",
            account_id,
            entry,
            kind,
        )
        return _count(st) > 0
