"""Mailhouse: a complete, self-hostable mail system (MTA, MSA, MDA, IMAP, POP3, webmail)."""

__version__ = "0.1.0"
