"""Harness smoke test for bench/smtp_ingest --sieve (issue 17 §6): 100 messages, one round per
side, and the Postfix + Dovecot LMTP + Pigeonhole reference. Checks that every message was stored on
every side, that Mailhouse's script ran for each one and Pigeonhole compiled it (the run fails
otherwise) and the report's shape; it asserts no speed."""

from __future__ import annotations

import pytest

from tests.bench.helpers import run_bench


@pytest.mark.slow
def test_sieve_bench_small() -> None:
    args = ["--sieve", "--messages", "100", "--sessions", "2", "--mode", "session", "--rounds", "1"]
    r = run_bench("-m", "bench.smtp_ingest.run", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "Mailhouse, 30-rule script" in out and "Mailhouse, no script" in out, out
    assert "Sieve cost per message:" in out and "ms CPU" in out, out
    assert out.count("100 delivered") == 2, out  # Postfix alone and Postfix + Dovecot LMTP + Pigeonhole
    assert "ratio Mailhouse with script/Postfix + Pigeonhole:" in out, out


def test_script_compiles() -> None:
    """The bench script is valid for Mailhouse's interpreter and has the 30 rules it claims."""
    from bench.smtp_ingest.sieve import SCRIPT

    from mailhouse.sieve.script import compile_script

    text = SCRIPT.read_text()
    compile_script(text)
    assert sum(line.startswith("if ") for line in text.splitlines()) == 30
