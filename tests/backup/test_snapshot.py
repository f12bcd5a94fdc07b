"""`backup/snapshot.py` and `backup/restore.py` on a SQLite store: backup, incremental backup,
--verify, whole-store restore into either backend, per-user and per-folder restore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailhouse.backup import restore, snapshot
from mailhouse.store import open_store
from mailhouse.store.api import NewMessage, Store
from mailhouse.store.sqlite import snapshot as sqlite_snapshot
from mailhouse.store.sqlite.backend import SqliteStore
from tests.backup.conftest import BIG
from tests.backup.conftest import msg as _msg


def _backup(live: SqliteStore, dest: Path) -> snapshot.BackupResult:
    return snapshot.backup_sqlite(live.db_path, live.files.root, dest)


async def _state(
    s: Store, address: str
) -> dict[str, tuple[int, list[tuple[int, frozenset[str], float, bytes]]]]:
    acc = await s.get_account(address)
    assert acc is not None
    out = {}
    for mb in await s.list_mailboxes(acc.id):
        msgs = [
            (m.uid, m.flags, m.internaldate, await s.blobs.get(m.blob_key))
            for m in await s.list_messages(mb.id)
        ]
        out[mb.name] = (mb.uidvalidity, msgs)
    return out


async def test_backup_verify_and_incremental(live: SqliteStore, tmp_path: Path) -> None:
    dest = tmp_path / "bk"
    first = _backup(live, dest)
    assert first.copied == 2 and first.kept == 0  # the two big messages are files; the rest inline
    man = json.loads((dest / "manifest.json").read_text())
    assert man["store"] == "sqlite" and man["counts"]["messages"] == 6 and man["counts"]["accounts"] == 2
    assert set(man["files"]) == {"index.db"} | {k for k in man["files"] if k.startswith("blobs/")}
    assert len(man["files"]) == 3
    assert snapshot.verify(dest).ok

    acc = await live.get_account("alice@example.org")
    assert acc is not None
    inbox = await live.get_mailbox(acc.id, "INBOX")
    assert inbox is not None
    await live.append_octets([(_msg(4, BIG), NewMessage(inbox.id, "", 0))])
    second = _backup(live, dest)
    assert (second.copied, second.kept, second.removed) == (1, 2, 0)  # only the new blob is copied
    assert snapshot.verify(dest).ok

    # an expunged message's blob file leaves the backup with it
    msgs = await live.list_messages(inbox.id)
    big = [m for m in msgs if m.size > BIG // 2]
    _, freed = await live.expunge(inbox.id, [big[0].uid])
    await live.backend.delete_external_blobs(freed)
    third = _backup(live, dest)
    assert (third.copied, third.removed) == (0, 1)
    assert snapshot.verify(dest).ok


async def test_verify_catches_a_corrupted_blob_and_a_missing_one(live: SqliteStore, tmp_path: Path) -> None:
    dest = tmp_path / "bk"
    _backup(live, dest)
    blobs = sorted((dest / "blobs").rglob("*"))
    files = [p for p in blobs if p.is_file()]
    data = bytearray(files[0].read_bytes())
    data[100] ^= 1  # one bit, same size
    files[0].write_bytes(bytes(data))
    files[1].unlink()
    rep = snapshot.verify(dest)
    assert not rep.ok
    text = "\n".join(rep.problems)
    assert "SHA-256 differs" in text and files[0].name in text
    assert "missing" in text and files[1].name in text


async def test_verify_refuses_a_backup_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "bk").mkdir()
    rep = snapshot.verify(tmp_path / "bk")
    assert not rep.ok and "manifest.json" in rep.problems[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_restore_into_an_empty_store(
    live: SqliteStore, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    dest = tmp_path / "bk"
    _backup(live, dest)
    url = (
        request.getfixturevalue("postgres_db_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'new.db'}"
    )
    target = open_store(url, tmp_path / "newdata")
    await target.open()
    try:
        res = await restore.restore_all(dest, target)
        assert res.messages == 6
        for addr in ("alice@example.org", "bob@example.org"):
            assert await _state(target, addr) == await _state(live, addr)  # UIDVALIDITY, UIDs, flags, octets
        with pytest.raises(restore.RestoreError, match="not empty"):
            await restore.restore_all(dest, target)
        r = await restore.restore_user(
            dest, target, "alice@example.org", "Archive"
        )  # beside live data, this backend
        after = await _state(target, "alice@example.org")
        assert [x[1:] for x in after[f"{r.parent}/Archive/2025"][1]] == [
            x[1:] for x in after["Archive/2025"][1]
        ]
    finally:
        await target.close()
    assert snapshot.verify(dest).ok  # restoring never writes into the backup


async def test_restore_one_user_beside_live_data(live: SqliteStore, tmp_path: Path) -> None:
    dest = tmp_path / "bk"
    _backup(live, dest)
    before = await _state(live, "alice@example.org")
    bob_before = await _state(live, "bob@example.org")
    r = await restore.restore_user(dest, live, "alice@example.org")
    assert r.parent.startswith("Restored ") and r.messages == 3
    after = await _state(live, "alice@example.org")
    for name, (uv, msgs) in before.items():
        assert after[name] == (uv, msgs)  # the live folders are untouched
        restored = after[f"{r.parent}/{name}"][1]
        assert [(f, d, b) for _, f, d, b in restored] == [(f, d, b) for _, f, d, b in msgs]
    assert await _state(live, "bob@example.org") == bob_before  # nobody else is touched
    with pytest.raises(restore.RestoreError, match="already has a folder"):
        await restore.restore_user(dest, live, "alice@example.org")


async def test_restore_one_folder_and_a_removed_account(live: SqliteStore, tmp_path: Path) -> None:
    dest = tmp_path / "bk"
    _backup(live, dest)
    before = await _state(live, "bob@example.org")
    await live.remove_account("bob@example.org")
    r = await restore.restore_user(dest, live, "bob@example.org", "Archive")
    assert r.parent == "" and r.mailboxes == 2  # Archive and Archive/2025; the account recreated
    after = await _state(live, "bob@example.org")
    assert [(f, d, b) for _, f, d, b in after["Archive/2025"][1]] == [
        (f, d, b) for _, f, d, b in before["Archive/2025"][1]
    ]
    assert after["INBOX"][1] == []  # only the folder asked for
    with pytest.raises(restore.RestoreError, match="no folder"):
        await restore.restore_user(dest, live, "alice@example.org", "Nope")


async def test_a_blob_freed_right_after_the_snapshot_point_is_in_the_backup(
    live: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blob ordering: files present before the snapshot are brought first, so a message in the
    snapshot whose file the live store frees a moment later (expunge) still has its blob in DEST."""
    real = sqlite_snapshot.snapshot

    def snapshot_then_free(db: Path, dest: Path) -> None:
        real(db, dest)
        for f in live.files.root.rglob("*"):  # every file blob freed just after the snapshot point
            if f.is_file():
                f.unlink()

    monkeypatch.setattr(sqlite_snapshot, "snapshot", snapshot_then_free)
    res = _backup(live, tmp_path / "bk")
    assert res.copied == 2
    assert snapshot.verify(tmp_path / "bk").ok
