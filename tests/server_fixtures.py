"""Fixtures that start Mailhouse itself (filled in by the server tests)."""
