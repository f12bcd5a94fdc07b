"""Smoke test of the sync-client IMAP profile (bench/imap/sync.py, issue 13 §2): a tiny run against
Mailhouse only, checking the report's shape (it asserts no speed); and the client-side state
checker, which must count what a sync client would trip over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.imap.sync import OPS, Checker

ROOT = Path(__file__).resolve().parents[2]


def test_sync_profile_runs_against_mailhouse() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    r = subprocess.run(
        [sys.executable, "-m", "bench.imap.sync", "--only", "mailhouse"]
        + ["--messages", "40", "--clients", "2", "--rounds", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "IMAP sync-client profile, 40 messages, 2 TLS clients x 2 rounds" in r.stdout
    assert "cmds/s" in r.stdout and "p50 / p99 by command type" in r.stdout
    rows = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith("  ") and ln.split()}
    for op in ("LOGIN", "SELECT", "FETCH_FLAGS", "FETCH_HEADERS", "FETCH_BODY", "APPEND"):
        assert op in OPS and not rows[op].split()[1:2] == ["0"], rows.get(op)  # each type ran


def test_checker_counts_unannounced_keywords_and_bad_sequence_numbers() -> None:
    ck = Checker()
    ck.feed(b"* FLAGS (\\Seen \\Deleted $Work)\r\n* 3 EXISTS\r\nS1 OK done\r\n", select=True)
    assert ck.exists == 3 and not ck.violations
    ck.feed(b"* 2 FETCH (UID 7 FLAGS (\\Seen $Work))\r\nS2 OK done\r\n")
    assert not ck.violations
    ck.feed(b"* 2 FETCH (UID 7 FLAGS ($Label1))\r\n* 4 FETCH (UID 9 FLAGS ())\r\nS3 OK done\r\n")
    assert ck.violations == {"keyword used before announced": 1, "FETCH out of range": 1}
    ck.feed(b"* 3 EXPUNGE\r\n* 3 EXPUNGE\r\n* 1 EXISTS\r\nS4 OK done\r\n")
    assert ck.violations["EXPUNGE out of range"] == 1 and ck.violations["EXISTS shrank without EXPUNGE"] == 1
    # an announcement in FLAGS makes the keyword usable
    ck.feed(b"* FLAGS (\\Seen $Label1)\r\n* 1 FETCH (FLAGS ($Label1))\r\nS5 OK done\r\n")
    assert ck.violations["keyword used before announced"] == 1
