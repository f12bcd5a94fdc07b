"""SQLite's half of `mailhouse backup` (`backup/snapshot.py`): a consistent copy of the index.

`snapshot(db, dest)` copies the live database with SQLite's online backup API
(`sqlite3.Connection.backup`, in one step: one read transaction, so the copy is the state at
one commit point, while the writer goes on under WAL). `blob_refs(db)` lists what an index
references: the file blob keys (messages and queue entries whose blob is not inline) and the
inline keys that have no row in `blobs` (a broken index). Both read only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailhouse.store.sqlite.blobs import is_inline

_REFS = "SELECT blob_key FROM messages UNION SELECT blob_key FROM queue"


def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)


def snapshot(db: Path, dest: Path) -> None:
    """Copy the database DB (live, in WAL mode) to DEST (replaced), consistently."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(db)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out, pages=-1)  # one step: one read transaction over the whole copy
            out.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            out.commit()
        finally:
            out.close()
    finally:
        src.close()
    tmp.replace(dest)


def blob_refs(db: Path) -> tuple[set[str], set[str]]:
    """(file blob keys the index at DB references, inline keys it references but lacks)."""
    c = _ro(db)
    try:
        keys = {str(r[0]) for r in c.execute(_REFS)}
        inline = {k for k in keys if is_inline(k)}
        present = {str(r[0]) for r in c.execute("SELECT key FROM blobs")} if inline else set()
        return keys - inline, inline - present
    finally:
        c.close()


def counts(db: Path) -> dict[str, int]:
    """Row counts of the tables a backup's manifest reports, and the schema version."""
    c = _ro(db)
    try:
        out = {t: int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in _COUNTED}
        out["schema_version"] = int(c.execute("PRAGMA user_version").fetchone()[0])
        return out
    finally:
        c.close()


def integrity(db: Path) -> str:
    """SQLite's `PRAGMA integrity_check` of DB: "ok" or the first problem."""
    c = _ro(db)
    try:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        c.close()


_COUNTED = ("domains", "accounts", "mailboxes", "messages", "queue")
