"""Harness smoke test for bench/import (issue 18 §5): 200 messages, one round. Checks that both
importers took every message; it asserts no speed."""

from __future__ import annotations

import re

import pytest

from tests.bench.helpers import ROOT, run_bench

pytestmark = pytest.mark.slow


def test_import_bench_small() -> None:
    r = run_bench(str(ROOT / "bench" / "import" / "run.py"), "--messages", "200", "--rounds", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.findall(r"imported (\d+) message\(s\)", out) == ["200", "50", "200"], out
    assert all(" failed 0" in line for line in out.splitlines() if "imported " in line), out
    assert out.count("200 messages\n") == 2  # both Dovecot imports, counted by doveadm mailbox status
    assert "ratio dovecot/mailhouse:" in out and "mailhouse peak RSS:" in out
