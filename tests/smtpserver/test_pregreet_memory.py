"""`PregreetMemory` over a real SQLite store: a known client costs no store round trip, verdicts
expire with their marks, and a store error never refuses a client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailhouse import config
from mailhouse.smtpserver import pregreet
from mailhouse.smtpserver.pregreet import PregreetMemory, Verdict
from mailhouse.store import open_store
from mailhouse.store.api import Mark


class Counting:
    """The store's marks, counting each call that goes to it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls = 0

    async def get_mark(self, key: str, now: float) -> Mark | None:
        self.calls += 1
        m: Mark | None = await self.store.get_mark(key, now)
        return m

    async def set_mark(self, key: str, value: str, expires: float) -> None:
        self.calls += 1
        await self.store.set_mark(key, value, expires)


async def test_cache_ttl_and_sharing(tmp_path: Path) -> None:
    st = open_store(f"sqlite:///{tmp_path / 'db'}", tmp_path)
    await st.open()
    try:
        now = [1000.0]
        cfg = config.from_dict({"server": {"smtp_pregreet_ttl": 100, "smtp_pregreet_fail_ttl": 10}})
        counting = Counting(st)
        mem = PregreetMemory(counting, cfg, clock=lambda: now[0])  # type: ignore[arg-type]
        assert await mem.verdict("192.0.2.1") is Verdict.UNKNOWN
        await mem.record("192.0.2.1", Verdict.PASS)
        await mem.record("192.0.2.2", Verdict.FAIL)
        calls = counting.calls
        for _ in range(100):  # known to this process: no store round trip
            assert await mem.verdict("192.0.2.1") is Verdict.PASS
            assert await mem.verdict("192.0.2.2") is Verdict.FAIL
        assert counting.calls == calls
        # another node (its own memory, same store) reads the marks once, then caches them
        other = PregreetMemory(counting, cfg, clock=lambda: now[0])  # type: ignore[arg-type]
        assert await other.verdict("192.0.2.1") is Verdict.PASS
        assert await other.verdict("192.0.2.1") is Verdict.PASS
        assert counting.calls == calls + 1
        now[0] += 11  # the failure expired, the pass not yet
        assert await mem.verdict("192.0.2.2") is Verdict.UNKNOWN
        assert await mem.verdict("192.0.2.1") is Verdict.PASS
        now[0] += 90
        assert await mem.verdict("192.0.2.1") is Verdict.UNKNOWN
        assert await other.verdict("192.0.2.1") is Verdict.UNKNOWN
    finally:
        await st.close()


async def test_cache_is_bounded(tmp_path: Path, monkeypatch: Any) -> None:
    st = open_store(f"sqlite:///{tmp_path / 'db'}", tmp_path)
    await st.open()
    try:
        monkeypatch.setattr(pregreet, "MAX_CACHED", 10)
        mem = PregreetMemory(st, config.from_dict({}))
        for i in range(25):
            await mem.record(f"192.0.2.{i}", Verdict.PASS)
        assert len(mem._cache) <= 10
        assert await mem.verdict("192.0.2.0") is Verdict.PASS  # dropped from the cache, kept in the store
    finally:
        await st.close()


async def test_store_error_means_unknown() -> None:
    class Broken:
        async def get_mark(self, key: str, now: float) -> Mark | None:
            raise ConnectionError("store down")

        async def set_mark(self, key: str, value: str, expires: float) -> None:
            raise ConnectionError("store down")

    mem = PregreetMemory(Broken(), config.from_dict({}))  # type: ignore[arg-type]
    assert await mem.verdict("192.0.2.1") is Verdict.UNKNOWN
    await mem.record("192.0.2.1", Verdict.PASS)  # logged, not raised; kept in this process
    assert await mem.verdict("192.0.2.1") is Verdict.PASS
