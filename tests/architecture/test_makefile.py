"""The Makefile's `.PHONY` names exactly its real, non-file targets (issue 11: gates)."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def targets_and_phony(text: str) -> tuple[set[str], set[str]]:
    targets: set[str] = set()
    phony: set[str] = set()
    for line in text.splitlines():
        if line.startswith(".PHONY:"):
            phony |= set(line.split(":", 1)[1].split())
            continue
        m = re.match(r"^([A-Za-z0-9_.$()/-]+)\s*:(?!=)", line)
        if m:
            targets.add(m.group(1))
    return targets, phony


def test_phony_names_real_targets_and_every_command_target_is_phony() -> None:
    targets, phony = targets_and_phony(MAKEFILE.read_text())
    commands = {t for t in targets if not t.startswith("$(")}  # $(STAMP) is a real file
    assert phony - targets == set(), "in .PHONY but not a target"
    assert commands - phony == set(), "a command target missing from .PHONY"
    assert {"test", "check", "serve"} <= phony


def test_checker_sees_a_stale_phony_name() -> None:
    targets, phony = targets_and_phony(".PHONY: a gone\na: b\n\tcmd\nX := y\nb:\n")
    assert phony - targets == {"gone"}
    assert targets == {"a", "b"}
