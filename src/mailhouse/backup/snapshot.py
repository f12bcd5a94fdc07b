"""`mailhouse backup DEST` and `mailhouse backup --verify DEST`: an online, incremental backup.

A backup directory holds one consistent snapshot of the store, restorable into either backend
(`backup/restore.py` drives `store/copy.py` from it):

    DEST/index.db        the index: a SQLite store database (inline blobs included)
    DEST/blobs/xx/KEY    every file blob the index references (immutable, named by key)
    DEST/manifest.json   time, store kind, schema version, counts, every file with size + SHA-256

Invariants:
- Consistency: the index is copied with SQLite's online backup API in one step
  (`store/sqlite/snapshot.py`) while mail flows; the snapshot point is that read transaction.
- Blob ordering (DESIGN.md §Durability): a blob file is fsynced before the index row naming it
  commits, so every file the snapshot references exists when the snapshot is taken. Files are
  linked/copied twice over: every file present before the snapshot (so a message expunged right
  after the snapshot keeps its file), then whatever the snapshot references and is still missing.
  A message acknowledged (250) before the snapshot point is therefore in DEST, blob and row.
- PostgreSQL (`backup_postgres`): one REPEATABLE READ, READ ONLY transaction is the snapshot
  point (`store/postgres/snapshot.py`); `store/copy.py` copies what it sees into DEST's SQLite
  index and blob files, so the same restore code serves both (in-database blobs are in the
  snapshot; S3 objects are immutable and read after it).
- Incremental: blob keys are unique and their files immutable (`store/blobfiles.py`), so a file
  already in DEST with the key is the blob; only new keys are copied, and their SHA-256 comes
  from the previous manifest. Files no longer referenced are removed from DEST.
- Every file is fsynced, and the manifest is written last (temporary name, rename): a backup
  interrupted before its manifest is not a backup (`--verify` says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailhouse.store.copy import copy_store
from mailhouse.store.sqlite import snapshot as sqlite_snapshot
from mailhouse.store.sqlite.backend import SqliteStore
from mailhouse.store.sqlite.engine import read_version

MANIFEST = "manifest.json"
INDEX = "index.db"
BLOBS = "blobs"
FORMAT = 1  # manifest format
HASH_CHUNK = 1024 * 1024  # bytes read per step while hashing: memory stays flat in blob size


class BackupError(Exception):
    pass


@dataclass
class BackupResult:
    dest: Path
    copied: int = 0  # blob files new in this backup
    kept: int = 0  # blob files already in DEST from an earlier backup
    removed: int = 0  # blob files no longer referenced, removed from DEST
    bytes_copied: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def blob_path(root: Path, key: str) -> Path:
    """Where blob KEY lives under ROOT (the layout of `store.blobfiles.FileBlobStore`)."""
    if not key.isalnum():
        raise BackupError(f"bad blob key {key!r}")
    return root / key[-2:] / key


def _live_keys(blob_dir: Path) -> set[str]:
    if not blob_dir.is_dir():
        return set()
    return {p.name for d in blob_dir.iterdir() if d.is_dir() for p in d.iterdir() if p.name.isalnum()}


def read_manifest(dest: Path) -> dict[str, Any]:
    try:
        data = json.loads((dest / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{dest} has no {MANIFEST}: not a (complete) Mailhouse backup") from None
    except ValueError as e:
        raise BackupError(f"{dest / MANIFEST} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{dest / MANIFEST}: unknown manifest format")
    return data


class _Copier:
    """Brings blob files from the live BLOB_DIR into DEST/blobs (hard links with LINK)."""

    def __init__(self, blob_dir: Path, dest_blobs: Path, link: bool, res: BackupResult) -> None:
        self.src, self.dst, self.link, self.res = blob_dir, dest_blobs, link, res
        self.present = _live_keys(dest_blobs)
        self.new: set[str] = set()

    def bring(self, key: str) -> bool:
        """False: the live store no longer has KEY (expunged and freed)."""
        if key in self.present:
            return True
        src, dst = blob_path(self.src, key), blob_path(self.dst, key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{key}.tmp")
        try:
            if self.link:
                tmp.unlink(missing_ok=True)
                os.link(src, tmp)
            else:
                shutil.copyfile(src, tmp)  # copy_file_range / sendfile: not through our memory
                _fsync(tmp)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return False
        tmp.replace(dst)
        self.present.add(key)
        self.new.add(key)
        self.res.bytes_copied += dst.stat().st_size
        return True


def _begin(dest: Path) -> dict[str, dict[str, Any]]:
    """Prepare DEST for a new backup; the previous manifest's file entries (reused for old blobs)."""
    dest.mkdir(parents=True, exist_ok=True)
    old: dict[str, dict[str, Any]] = {}
    if (dest / MANIFEST).exists():
        old = read_manifest(dest)["files"]
        (dest / MANIFEST).unlink()  # from here until the new manifest, DEST is not a backup
    return old


def _seal(
    dest: Path, kind: str, stamp: float, old: dict[str, dict[str, Any]], new: set[str], res: BackupResult
) -> None:
    """Finish a backup whose DEST/index.db is written: drop unreferenced blob files, check that every
    referenced one is there, hash what is new, fsync, and write the manifest last."""
    files, missing_inline = sqlite_snapshot.blob_refs(dest / INDEX)
    if missing_inline:
        raise BackupError(f"the store's index names {len(missing_inline)} inline blobs it does not hold")
    present = _live_keys(dest / BLOBS)
    lost = sorted(files - present)
    if lost:  # created and freed within the backup's window: cannot be a message acknowledged before it
        raise BackupError(
            f"blob files vanished while backing up ({', '.join(lost[:5])}); run the backup again"
        )
    for key in present - files:  # no longer referenced by the index
        blob_path(dest / BLOBS, key).unlink()
        res.removed += 1
    res.copied = len(new & files)
    res.kept = len(files) - res.copied
    _fsync(dest / INDEX)
    entries: dict[str, dict[str, Any]] = {
        INDEX: {"size": (dest / INDEX).stat().st_size, "sha256": sha256_file(dest / INDEX)}
    }
    for key in sorted(files):
        rel = blob_path(Path(BLOBS), key).as_posix()
        prev = old.get(rel)
        size = (dest / rel).stat().st_size
        if key not in new and prev is not None and prev.get("size") == size:
            entries[rel] = prev  # immutable: the previous backup hashed it
        else:
            entries[rel] = {"size": size, "sha256": sha256_file(dest / rel)}
    for d in {blob_path(dest / BLOBS, k).parent for k in new & files}:
        _fsync(d)
    res.counts = sqlite_snapshot.counts(dest / INDEX)
    res.counts["blob_files"] = len(files)
    manifest = {
        "format": FORMAT,
        "time": stamp,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
        "store": kind,
        "schema_version": res.counts.pop("schema_version"),
        "counts": res.counts,
        "files": entries,
    }
    tmp = dest / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    _fsync(tmp)
    tmp.replace(dest / MANIFEST)
    _fsync(dest)


def backup_sqlite(db: Path, blob_dir: Path, dest: Path, *, link: bool = False) -> BackupResult:
    """Back up the SQLite store DB (blob files under BLOB_DIR) into DEST, incrementally."""
    t0 = time.monotonic()
    if not db.exists():
        raise BackupError(f"the store database {db} does not exist")
    res = BackupResult(dest)
    old = _begin(dest)
    copier = _Copier(blob_dir, dest / BLOBS, link, res)
    for key in _live_keys(blob_dir):  # files present before the snapshot point
        copier.bring(key)
    stamp = time.time()
    sqlite_snapshot.snapshot(db, dest / INDEX)  # the snapshot point
    files, _ = sqlite_snapshot.blob_refs(dest / INDEX)
    for key in files:  # written after the first pass (a vanished one is reported by _seal)
        copier.bring(key)
    _seal(dest, "sqlite", stamp, old, copier.new, res)
    res.seconds = time.monotonic() - t0
    return res


async def backup_postgres(url: str, data_dir: Path, dest: Path) -> BackupResult:
    """Back up the PostgreSQL store at URL into DEST: one REPEATABLE READ snapshot of every table
    (`store/postgres/snapshot.py`) copied by `store/copy.py` into a SQLite index + blob files
    (restorable into either backend). Incremental: a blob file already in DEST is not rewritten."""
    from mailhouse.store.postgres.snapshot import open_snapshot  # asyncpg only when PostgreSQL is used

    t0 = time.monotonic()
    res = BackupResult(dest)
    old = await asyncio.to_thread(_begin, dest)
    before = _live_keys(dest / BLOBS)
    with tempfile.TemporaryDirectory(prefix="mailhouse-backup-") as tmp:
        build = Path(tmp) / INDEX
        dst = SqliteStore(build, dest / BLOBS, lock_dir=Path(tmp) / "locks")
        stamp = time.time()
        src = await open_snapshot(url, data_dir)  # the snapshot point
        try:
            await dst.open()
            try:
                await copy_store(src, dst)
            finally:
                await dst.close()
        finally:
            await src.close()
        await asyncio.to_thread(sqlite_snapshot.snapshot, build, dest / INDEX)  # one self-contained file
    new = _live_keys(dest / BLOBS) - before
    res.bytes_copied = sum(blob_path(dest / BLOBS, k).stat().st_size for k in new)
    await asyncio.to_thread(_seal, dest, "postgresql", stamp, old, new, res)
    res.seconds = time.monotonic() - t0
    return res


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(dest: Path) -> VerifyReport:
    """Check a backup: manifest, every file's size and SHA-256, the index's integrity and schema
    version, and that every blob the index references is in the backup (index ↔ blobs)."""
    rep = VerifyReport()
    try:
        man = read_manifest(dest)
    except BackupError as e:
        rep.problems.append(str(e))
        return rep
    files: dict[str, dict[str, Any]] = man["files"]
    for rel, want in sorted(files.items()):
        p = dest / rel
        if not p.is_file():
            rep.problems.append(f"{rel}: missing")
            continue
        size = p.stat().st_size
        if size != want["size"]:
            rep.problems.append(f"{rel}: {size} bytes, the manifest says {want['size']}")
        elif sha256_file(p) != want["sha256"]:
            rep.problems.append(f"{rel}: SHA-256 differs from the manifest (corrupted)")
        rep.files += 1
        rep.bytes += size
    db = dest / INDEX
    if INDEX not in files or not db.is_file():
        rep.problems.append(f"{INDEX}: not in the backup")
        return rep
    if (check := sqlite_snapshot.integrity(db)) != "ok":
        rep.problems.append(f"{INDEX}: integrity check: {check}")
        return rep
    version = read_version(db)
    if version != man.get("schema_version"):
        rep.problems.append(
            f"{INDEX}: schema version {version}, the manifest says {man.get('schema_version')}"
        )
    refs, missing_inline = sqlite_snapshot.blob_refs(db)
    for key in sorted(refs):
        if blob_path(Path(BLOBS), key).as_posix() not in files:
            rep.problems.append(f"blob {key}: referenced by the index, not in the backup")
    for key in sorted(missing_inline):
        rep.problems.append(f"inline blob {key}: referenced by the index, not in it")
    return rep


__all__ = [
    "BackupError",
    "BackupResult",
    "VerifyReport",
    "backup_postgres",
    "backup_sqlite",
    "read_manifest",
    "verify",
]
