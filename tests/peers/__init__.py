"""Real peer servers for tests and benchmarks, started on loopback and stopped by PID.

Usable without pytest (benchmarks)::

    from tests.peers import DNSServer, PostfixInstance, DovecotInstance, PostgresInstance

The pytest fixtures live in :mod:`tests.peers.fixtures`.
"""

from .dns import DNSServer
from .dovecot import DovecotInstance
from .pebble import Pebble
from .ports import free_port, wait_port
from .postfix import PostfixInstance, SmtpSink, smtp_sink, smtp_source
from .postgres import PostgresInstance

__all__ = [
    "DNSServer",
    "DovecotInstance",
    "Pebble",
    "PostfixInstance",
    "PostgresInstance",
    "SmtpSink",
    "free_port",
    "smtp_sink",
    "smtp_source",
    "wait_port",
]
