"""`mailhouse store copy` / `store verify` carry the spam learning (Bayes tokens and totals, what
each message was trained as, the per-user sender lists; migration 10) and the received report
summaries (migration 11) and the Sieve scripts (issue 17), SQLite → PostgreSQL → SQLite, and verify finds a difference in them."""

from __future__ import annotations

from pathlib import Path

from mailhouse.store.api import ListKind, ReportKind, ReportSummary, Store, TrainKind
from mailhouse.store.copy import ROW_TABLES, copy_store
from mailhouse.store.verify import verify_store
from tests.cluster.test_store_copy import _open

BIG_TOKEN = 2**63 - 5  # tokens are 63-bit hashes: the top of the range must survive both backends
REPORT = ReportSummary(
    "example.org",
    ReportKind.DMARC,
    "big.example",
    "r-1",
    1796601600.0,
    1796688000.0,
    1796690000.5,
    '[{"n": 3}]',
)


async def _learning(store: Store, account_id: int) -> tuple[object, ...]:
    return (
        await store.spam_totals(account_id),
        await store.spam_token_counts(account_id, [1, 2, BIG_TOKEN]),
        await store.trained_as(account_id, "mid-1"),
        await store.trained_as(account_id, "mid-2"),
        await store.sender_lists(account_id),
        await store.list_reports("example.org", ReportKind.DMARC, 0.0),
        await store.user_settings(account_id),
        await store.sieve_scripts(account_id),  # issue 17: scripts and which one is active
        await store.active_sieve_script(account_id),
    )


async def test_copy_carries_spam_learning_and_reports(postgres_db_url: str, tmp_path: Path) -> None:
    src = await _open(f"sqlite:///{tmp_path / 'a' / 'mailhouse.db'}", tmp_path / "a")
    pg = await _open(postgres_db_url, tmp_path / "pg")
    back = await _open(f"sqlite:///{tmp_path / 'b' / 'mailhouse.db'}", tmp_path / "b")
    try:
        await src.add_domain("example.org")
        await src.add_account("nobody@example.org", "h")  # ids are kept: another account first
        acc = await src.add_account("alice@example.org", "h")
        await src.train_tokens(acc.id, "mid-1", [1, 2, BIG_TOKEN], TrainKind.SPAM)
        await src.train_tokens(acc.id, "mid-2", [2], TrainKind.HAM)
        await src.set_sender_list(acc.id, "friend@else.test", ListKind.ALLOW)
        await src.set_sender_list(acc.id, "spam.test", ListKind.BLOCK)
        assert await src.add_report(REPORT)
        await src.set_user_setting(acc.id, "name", "Alice")  # webmail settings (issue 19)
        await src.set_user_setting(acc.id, "signature", "-- \nA")
        await src.put_sieve_script(acc.id, "main", 'require "fileinto";\r\nfileinto "ü";\r\n', 16, 65536, 1.5)
        await src.put_sieve_script(acc.id, "spare", "keep;", 16, 65536, 2.0)
        await src.set_active_sieve_script(acc.id, "main")
        want = await _learning(src, acc.id)
        assert want[0] == (1, 1) and want[1] == {1: (1, 0), 2: (1, 1), BIG_TOKEN: (1, 0)}

        res = await copy_store(src, pg)
        assert res.rows == {
            "spam_tokens": 3,
            "spam_totals": 1,
            "spam_trained": 2,
            "spam_lists": 2,
            "reports": 1,
            "user_settings": 2,
            "contacts": 0,
            "collected_addrs": 0,
            "sieve_scripts": 2,
        }
        rep = await verify_store(src, pg, blob_map=res.blob_map)
        assert rep.ok, rep.render()
        assert rep["spam tokens"].destination == 3 and rep["reports"].destination == 1
        assert await _learning(pg, acc.id) == want

        res2 = await copy_store(pg, back)
        assert res2.rows == res.rows
        assert (await verify_store(pg, back, blob_map=res2.blob_map)).ok
        assert await _learning(back, acc.id) == want

        # a difference in the learning is found
        await back.set_sender_list(acc.id, "friend@else.test", ListKind.BLOCK)
        rep3 = await verify_store(pg, back)
        assert not rep3.ok and rep3["spam lists"].problems, rep3.render()
        await back.set_active_sieve_script(acc.id, "spare")
        assert (await verify_store(pg, back))["sieve scripts"].problems
    finally:
        for s in (back, pg, src):
            await s.close()


def test_every_row_table_is_in_the_copy_table_list() -> None:
    from mailhouse.store.copy import TABLES

    assert set(ROW_TABLES) <= set(TABLES)
    assert all("not copied" not in TABLES[t] for t in ROW_TABLES)
