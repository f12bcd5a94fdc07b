"""Harness smoke test for bench/abuse (issue 12 item 13): ``--quick`` against Mailhouse only,
with tiny sizes and a few seconds of attack. It checks the report's shape and that the
legitimate client got answers while the hostile connections ran; it asserts no speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--quick",
    "--only",
    "mailhouse",
    "--duration",
    "4",
    "--data-size",
    "300000",
    "--literal-size",
    "100000",
    "--big-size",
    "300000",
    "--html-depth",
    "2000",
]


def test_abuse_bench_quick_against_mailhouse(tmp_path: Path) -> None:
    out = tmp_path / "abuse.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    r = subprocess.run(
        [sys.executable, "-m", "bench.abuse.run", *TINY, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RSS peak" in r.stdout and "p99 ms" in r.stdout  # the table
    report = json.loads(out.read_text())
    assert report["profile"]["duration"] == 4 and report["hostile_source"] == "127.0.0.2"
    assert sum(report["mix"].values()) == 50
    (res,) = report["results"]
    assert res["server"] == "mailhouse"
    mem = res["memory"]
    assert mem["samples"] >= 10 and mem["peak_rss"] >= mem["baseline_rss"] > 10 * 1024 * 1024
    assert mem["peak_pss"] > 10 * 1024 * 1024
    legit = res["legit"]
    for key in ("ops", "p50", "p99", "max", "errors", "by_op"):
        assert key in legit
    # the legitimate client got answers to every kind of request while the attack ran
    assert set(legit["by_op"]) == {"smtp_delivery", "imap_login_select_fetch", "imap_noop"}
    for op, s in legit["by_op"].items():
        assert s["ops"] >= 1, (op, s)
        assert 0 < s["p50"] <= s["p99"]
    hostile = res["hostile"]
    assert hostile["connections_at_once"] == 50
    assert set(hostile["by_kind"]) == set(report["mix"])
    for kind, t in hostile["by_kind"].items():
        assert t["conns"] >= 1, kind
        assert set(t) == {"conns", "refused", "closed", "held", "done", "first_refusal"}
        # every connection ended one way or another, or was still open at the end
        assert t["refused"] + t["closed"] + t["held"] + t["done"] >= 1, (kind, t)
    assert hostile["refused"] + hostile["closed"] + hostile["held"] >= 1


def test_report_breakdowns_share_one_loop() -> None:
    """Both per-server breakdowns of the report (legitimate operations, hostile kinds) are
    written by one `breakdown` loop, and read as before."""
    from bench.abuse.run import _kind_row, _op_row, breakdown

    results = [
        {
            "server": "mailhouse",
            "legit": {
                "by_op": {"smtp send": {"ops": 3, "p50": 0.012, "p99": 0.5, "errors": 1, "first_error": "x"}}
            },
            "hostile": {
                "by_kind": {
                    "slowloris": {
                        "conns": 5,
                        "refused": 1,
                        "closed": 2,
                        "held": 2,
                        "done": 0,
                        "first_refusal": None,
                    }
                }
            },
        }
    ]
    assert breakdown(results, "legit", "by_op", _op_row) == [
        "  mailhouse        smtp send                    3       12      500    1  first: x"
    ]
    assert breakdown(results, "hostile", "by_kind", _kind_row) == [
        "  mailhouse        slowloris            5     1     2     2     0"
    ]
