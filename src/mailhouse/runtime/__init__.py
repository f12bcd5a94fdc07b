"""The connection runtime shared by every protocol adapter (SMTP, IMAP, POP3).

``limits`` (the one :class:`Limits`), ``connection`` (the Protocol-based connection: flow control,
drain, STARTTLS, COMPRESS), ``listener`` (listener start-up, implicit TLS, SO_REUSEPORT, session
tracking) and ``authline`` (the SASL line loop). Imports nothing above ``proto/`` and the plumbing.
"""

from mailhouse.runtime.authline import read_auth_line
from mailhouse.runtime.connection import LOAD, Connection, DataHandler, Opener, ProcessLoad, WriteStalled
from mailhouse.runtime.limits import Limits
from mailhouse.runtime.listener import reuse_port, start_listener

__all__ = [
    "LOAD",
    "Connection",
    "DataHandler",
    "Limits",
    "Opener",
    "ProcessLoad",
    "WriteStalled",
    "read_auth_line",
    "reuse_port",
    "start_listener",
]
