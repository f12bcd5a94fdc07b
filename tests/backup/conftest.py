"""Backup-test fixtures: the per-test PostgreSQL database of tests/store (reused, not copied)."""

from tests.store.conftest import postgres_db_url

__all__ = ["postgres_db_url"]
