"""Issue 18 §2: export → import round trip (`backup/export.py` → `transfer/`): every message
byte-identical (blob octets), same flags, keywords, INTERNALDATEs and folder names (nested,
special-use, non-ASCII); through Maildir also the same UIDs and UIDVALIDITY. The source store
runs on both backends, the target is a second, empty store; one test runs both halves as
`mailhouse` processes.

One message is stored without a final line break (only a writer outside the append paths can do
that: `store/crlf.py` makes every stored message end with CRLF). It must not swallow the next
message (mbox: the entry separator), and it comes back with the CRLF the store invariant adds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailhouse.backup.export import Format, export
from mailhouse.store.api import NewMessage
from mailhouse.store.store import MailStore
from mailhouse.transfer.importer import Importer
from mailhouse.transfer.maildir import MaildirSource
from mailhouse.transfer.mbox import MboxSource
from tests.cli.test_import_cli import in_store
from tests.mailhouse_proc import MailhouseProcess
from tests.transfer.conftest import ALICE, alice_store

MAX = 8 << 20
KEYWORDS = frozenset({"$Label1", "project-x", "$Forwarded"})
NO_FINAL_BREAK = b"Subject: no final line break\r\n\r\nlast line"
BINARY = bytes(b for b in range(256) if b not in (10, 13))  # 8-bit octets, NUL included, no bare CR/LF

# (folder, special-use, [(uid, flags, internaldate, octets)]) -- UIDs with gaps, as after expunges
CONTENT: list[tuple[str, str | None, list[tuple[int, frozenset[str], float, bytes]]]] = [
    (
        "INBOX",
        None,
        [
            (3, frozenset({"\\Seen"}) | KEYWORDS, 1_600_000_000.0, b"Subject: one\r\n\r\nhello\r\n"),
            (
                7,
                frozenset({"\\Flagged", "\\Answered"}),
                1_600_000_100.0,
                b"Subject: from lines\r\n\r\nFrom here on\r\n\r\nFrom me Tue Dec  8 02:07:16 2026\r\n"
                b">From quoted\r\n>>From twice\r\nend\r\n",
            ),
            (
                8,
                frozenset({"\\Seen", "$Label1"}),
                1_600_000_200.0,
                b"Subject: 8bit\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                + BINARY
                + b"\r\n"
                + BINARY
                + b"\r\n",
            ),
            (
                12,
                frozenset({"\\Draft", "\\Deleted"}),
                1_600_000_300.0,
                NO_FINAL_BREAK,
            ),
            (
                13,
                frozenset({"$Forwarded"}),
                1_600_000_400.0,
                b"Subject: big\r\n\r\n" + b"y" * 700_000 + b"\r\n",
            ),
        ],
    ),
    ("Archive/2025", None, [(2, frozenset({"\\Answered"}), 1_500_000_000.0, b"Subject: old\r\n\r\nold\r\n")]),
    ("Sent", "\\Sent", [(1, frozenset({"\\Seen"}), 1_600_001_000.0, b"Subject: sent\r\n\r\nsent\r\n")]),
    (
        "Trash",
        "\\Trash",
        [(5, frozenset({"\\Seen", "\\Deleted"}), 1_600_002_000.0, b"Subject: bin\r\n\r\nx\r\n")],
    ),
    (
        "\u00c9t\u00e9",
        None,
        [(1, frozenset(), 1_600_003_000.0, "Subject: summer\r\n\r\n\u00e9t\u00e9\r\n".encode())],
    ),
]

Snapshot = dict[str, tuple[str | None, int, list[tuple[int, frozenset[str], float, bytes]]]]


async def fill(store: MailStore) -> None:
    acc = await store.get_account(ALICE)
    assert acc is not None
    existing = {mb.name: mb for mb in await store.list_mailboxes(acc.id)}
    for name, use, msgs in CONTENT:
        mb = existing.get(name) or await store.create_mailbox(acc.id, name, use)
        await store.adopt_uidvalidity(mb.id, 3_000_000_000 + len(name))
        for uid, flags, date, data in msgs:
            await store.append_octets([(data, NewMessage(mb.id, "", 0, flags, date, uid=uid))])


async def snapshot(store: MailStore) -> tuple[Snapshot, dict[str, int]]:
    """({folder: (special-use, UIDVALIDITY, [(uid, flags, date, blob octets)])}, {folder: UIDNEXT})."""
    acc = await store.get_account(ALICE)
    assert acc is not None
    out: Snapshot = {}
    nexts: dict[str, int] = {}
    for mb in await store.list_mailboxes(acc.id):
        rows = [
            (r.uid, r.flags, r.internaldate, await store.blobs.get(r.blob_key))
            for r in await store.list_messages(mb.id)
        ]
        if rows or mb.special_use or mb.name == "INBOX" or mb.name in {c[0] for c in CONTENT}:
            out[mb.name] = (mb.special_use, mb.uidvalidity, rows)
            nexts[mb.name] = mb.uidnext
    return out, nexts


def expected(s: Snapshot) -> Snapshot:
    """S as an import stores it: the message without a final line break gets its CRLF."""
    return {
        name: (use, uv, [(u, f, d, b + b"\r\n" if b == NO_FINAL_BREAK else b) for u, f, d, b in rows])
        for name, (use, uv, rows) in s.items()
    }


def without_uids(s: Snapshot) -> dict[str, tuple[str | None, list[tuple[frozenset[str], float, bytes]]]]:
    return {name: (use, [(f, d, b) for _, f, d, b in rows]) for name, (use, _, rows) in s.items()}


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[MailStore]:
    async with alice_store(f"sqlite:///{tmp_path / 'target.db'}", tmp_path / "target") as s:
        yield s


async def test_maildir_round_trip_is_identical(store: MailStore, target: MailStore, tmp_path: Path) -> None:
    await fill(store)
    res = await export(store, Format.MAILDIR, tmp_path / "out")
    assert res.problems == []
    report = await Importer(
        target, MaildirSource(tmp_path / "out/example.org/alice"), ALICE, max_size=MAX
    ).run()
    assert report.failed == []
    before, next_before = await snapshot(store)
    after, next_after = await snapshot(target)
    assert after == expected(
        before
    )  # octets, flags, keywords, dates, folder names, special-use, UIDs, UIDVALIDITY
    assert next_after == next_before


async def test_mbox_round_trip_is_identical(store: MailStore, target: MailStore, tmp_path: Path) -> None:
    await fill(store)
    res = await export(store, Format.MBOX, tmp_path / "out")
    assert res.problems == []
    root = tmp_path / "out" / ALICE
    for path in sorted(root.rglob("*.mbox")):
        name = path.relative_to(root).as_posix().removesuffix(".mbox")
        report = await Importer(target, MboxSource(path, name), ALICE, max_size=MAX, target_folder=name).run()
        assert report.failed == []
    before, _ = await snapshot(store)
    after, _ = await snapshot(target)
    assert without_uids(after) == without_uids(expected(before))  # mbox keeps no UIDs


@pytest.mark.slow
def test_round_trip_through_the_commands(tmp_path: Path) -> None:
    """`mailhouse export maildir|mbox` and `mailhouse import maildir|mbox` as processes."""
    dirs: dict[str, MailhouseProcess] = {}
    for side in ("a", "b", "c"):
        (tmp_path / side).mkdir()
        mh = MailhouseProcess(tmp_path / side, services=())
        mh.add_domain("example.org")
        mh.add_user(ALICE)
        dirs[side] = mh

    in_store(dirs["a"], fill)
    dirs["a"].cli("export", "maildir", str(tmp_path / "md"))
    dirs["a"].cli("export", "mbox", str(tmp_path / "mb"))
    dirs["b"].cli("import", "maildir", str(tmp_path / "md/example.org/alice"), ALICE, "--no-index")
    root = tmp_path / "mb" / ALICE
    for path in sorted(root.rglob("*.mbox")):
        name = path.relative_to(root).as_posix().removesuffix(".mbox")
        dirs["c"].cli("import", "mbox", str(path), ALICE, "--folder", name, "--no-index")
    a = in_store(dirs["a"], snapshot)
    b = in_store(dirs["b"], snapshot)
    c = in_store(dirs["c"], snapshot)
    assert b == (expected(a[0]), a[1])
    assert without_uids(c[0]) == without_uids(expected(a[0]))
