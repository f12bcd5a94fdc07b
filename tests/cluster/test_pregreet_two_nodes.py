"""The pregreet test's memory is shared through the store (issue 12 item 8): a client that passed
on one node is greeted at once by another node on the same PostgreSQL database, and a client
refused on one is refused by the other.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mailhouse.store import open_store
from tests.helpers import RawSMTP
from tests.mailhouse_proc import MailhouseProcess

WAIT = 2.0
EXTRA = f"[server]\nsmtp_pregreet_wait = {WAIT}\n"


def _greeting(addr: tuple[str, int]) -> tuple[RawSMTP, list[bytes], float]:
    t0 = time.monotonic()
    s = RawSMTP(addr)
    lines = [s.line()]
    while lines[-1][3:4] == b"-":
        lines.append(s.line())
    return s, lines, time.monotonic() - t0


def _wait_for_mark(url: str, tmp: Path, value: str, timeout: float = 10.0) -> None:
    """Wait until node A's verdict is committed (it is written just after A's reply)."""

    async def poll() -> None:
        st = open_store(url, tmp)
        await st.open()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                m = await st.get_mark("pregreet:127.0.0.1", time.time())
                if m is not None and m.value == value:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"no pregreet:{value} mark in the store after {timeout} s")
        finally:
            await st.close()

    asyncio.run(poll())


@pytest.mark.parametrize("smtp_pair", [EXTRA], indirect=True)
def test_pass_on_one_node_is_honoured_by_another(
    tmp_path: Path, postgres_db_url: str, smtp_pair: tuple[MailhouseProcess, MailhouseProcess]
) -> None:
    a, b = smtp_pair
    s, lines, took = _greeting(a.addr("smtp"))
    assert len(lines) == 2 and took >= WAIT * 0.9, (lines, took)  # tested on A
    s.close()
    _wait_for_mark(postgres_db_url, tmp_path, "pass")
    s, lines, took = _greeting(b.addr("smtp"))
    assert lines == [b"220 mail.example.org ESMTP Mailhouse"], lines  # B knows it passed
    assert took < WAIT / 4, took
    s.close()
