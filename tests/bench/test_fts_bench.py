"""Harness smoke test for bench/fts (issue 13 §4): a tiny mailbox, Mailhouse scan and index and
Dovecot + fts-xapian in one run. Checks the report's shape and that the index and the scan
found the same messages; it asserts no speed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.helpers import run_bench


def test_fts_bench_small(tmp_path: Path) -> None:
    out = tmp_path / "fts.json"
    args = ["--messages", "300", "--queries", "6", "--scan-queries", "3", "--dovecot-messages", "60"]
    r = run_bench("-m", "bench.fts.run", *args, "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Mailhouse, word index" in r.stdout and "Dovecot + fts-xapian" in r.stdout
    got = json.loads(out.read_text())
    mh = got["mailhouse"]
    assert got["messages"] == 300 and got["dovecot_messages"] == 60
    assert mh["backfill_docs"] == 300
    assert len(mh["indexed"]) == 6 and len(got["dovecot"]["indexed"]) == 6
    assert mh["scan_counts"] == mh["indexed_counts"][:3]  # the same answers with and without the index
    assert sum(mh["indexed_counts"]) > 0
