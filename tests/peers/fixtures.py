"""pytest plugin: real peer servers on loopback, cleaned up at session end.

Enable suite-wide with ``pytest_plugins = ["tests.peers.fixtures"]`` in tests/conftest.py.

Fixtures (all session-scoped unless noted):

- ``dns_server_factory(**records) -> DNSServer`` (started)
- ``postfix_factory(**kw) -> PostfixInstance`` (started)
- ``dovecot_factory(**kw) -> DovecotInstance`` (started)
- ``smtp_sink_factory(host="127.0.0.2", **kw) -> SmtpSink`` (started)
- ``postgres -> PostgresInstance`` (one per session; ``$MAILHOUSE_TEST_PG_URL`` if set)
- ``postgres_db`` (function scope) -> URL of a fresh database, dropped afterwards

Everything a factory started is stopped by PID when the session ends; a test may
stop an instance earlier (``stop()`` is idempotent) or use it as a context manager.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from .dns import DNSServer
from .dovecot import DovecotInstance
from .pebble import Pebble
from .postfix import PostfixInstance, SmtpSink
from .postgres import PostgresInstance

_db_counter = itertools.count()


def _factory(cls, **defaults):
    started = []

    def make(*args, **kw):
        inst = cls(*args, **{**defaults, **kw})
        started.append(inst)
        return inst.start()

    return make, started


def _stop_all(started) -> None:
    """Stop everything in parallel (Postfix and Dovecot each take ~1 s to shut down)."""
    errors = []

    def stop(inst):
        try:
            inst.stop()
        except Exception as e:  # keep stopping the others
            errors.append(e)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(stop, reversed(started)))
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def dns_server_factory():
    """``dns_server_factory(mx={...}, a={...}, txt={...}, srv={...}) -> DNSServer``."""
    make, started = _factory(DNSServer)
    yield make
    _stop_all(started)


@pytest.fixture
def pebble_factory():
    """``pebble_factory(http_port=, dnsserver=) -> Pebble``: a test ACME server, a fresh CA each."""
    make, started = _factory(Pebble)
    yield make
    _stop_all(started)


@pytest.fixture(scope="session")
def postfix_factory():
    """``postfix_factory(mode="local"|"relay", host=, port=, domains=, relay_to=, ...)``."""
    make, started = _factory(PostfixInstance)
    yield make
    _stop_all(started)


@pytest.fixture(scope="session")
def dovecot_factory():
    """``dovecot_factory(users={"alice@example.test": "pw"}, host=, mail_dir=, ...)``."""
    make, started = _factory(DovecotInstance)
    yield make
    _stop_all(started)


@pytest.fixture(scope="session")
def smtp_sink_factory():
    """``smtp_sink_factory(host="127.0.0.2", port=None, dump_dir=...) -> SmtpSink``."""
    make, started = _factory(SmtpSink)
    yield make
    _stop_all(started)


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL per session (or ``$MAILHOUSE_TEST_PG_URL``)."""
    inst = PostgresInstance().start()
    yield inst
    inst.stop()


@pytest.fixture
def postgres_db(postgres):
    """URL of a fresh, empty database on the session's PostgreSQL; dropped after the test."""
    name = f"mh_test_{os.getpid()}_{next(_db_counter)}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)
