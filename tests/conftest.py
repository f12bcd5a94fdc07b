"""Shared fixtures: a store on every backend, a running Mailhouse server, free ports."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.peers.fixtures", "tests.server_fixtures"]


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
