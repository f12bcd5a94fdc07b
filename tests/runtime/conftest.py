"""Run the runtime tests on both event loops Mailhouse uses: asyncio's own and uvloop (``serve``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop


@pytest.hookimpl(optionalhook=True)  # pytest-asyncio ≥ 1.4; older versions run the default loop only
def pytest_asyncio_loop_factories(
    config: Any, item: Any
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
