"""Running a benchmark the way a person does, from the repository root with src/ and the root on
the path, for the harness smoke tests of tests/bench."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python ARGV...`` (e.g. ``-m bench.fts.run --messages 300``) in ROOT; output captured."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
