"""Fixtures that start Mailhouse itself as a real `mailhouse serve` process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess


@pytest.fixture
def mailhouse_factory(tmp_path: Path) -> Iterator[Callable[..., MailhouseProcess]]:
    started: list[MailhouseProcess] = []
    n = 0

    def make(**kw: Any) -> MailhouseProcess:
        nonlocal n
        n += 1
        root = tmp_path / f"mh{n}"
        root.mkdir()
        proc = MailhouseProcess(root, **kw)
        started.append(proc)
        return proc

    yield make
    for p in started:
        p.stop()


@pytest.fixture
def mailhouse(mailhouse_factory: Callable[..., MailhouseProcess]) -> MailhouseProcess:
    """A running Mailhouse hosting example.org with alice@ and bob@ (password `PASSWORD`)."""
    mh = mailhouse_factory()
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.add_user("bob@example.org")
    return mh.start()


__all__ = ["PASSWORD", "mailhouse", "mailhouse_factory"]
