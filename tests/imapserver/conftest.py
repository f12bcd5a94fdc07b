"""Shares one Mailhouse server (session scope) across the IMAP server test modules."""

from tests.imapserver.server_helpers import imap_server  # noqa: F401
