"""Exclusive POP3 maildrop locks on one host: ``flock(2)`` (RFC 1939 §8, RFC 2449 §8.1.1).

RFC 1939 §8: while a POP3 session is in TRANSACTION state the server holds an
exclusive-access lock on the maildrop, so two POP3 sessions never see (and
delete from) the same message list. IMAP sessions are not locked out: they
work on the same store with their own UID semantics, and the POP3 session
copes with messages expunged underneath it.

The store API offers it as ``Store.try_lock_maildrop`` (``store.api.MaildropLocks``):

* SQLite (embedded, one host): :class:`FileMaildropLocks` here — ``flock(2)`` on
  ``<data_dir>/locks/pop3-<mailbox id>.lock``, non-blocking. flock locks belong
  to the open file description, so they exclude sessions in the same process
  *and* in every other worker process forked by ``[server] workers``; the
  kernel drops them when the process dies (kill -9 leaves no stale lock).
  Lock files are never unlinked: unlinking a lock file while another process
  waits on it is the classic flock race.
* PostgreSQL (several nodes): ``store.postgres.locks`` — a session-level
  advisory lock on a dedicated connection, freed by the server when the node dies.

Invariant: releasing a lease is idempotent; a lease never outlives its process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path


class FileLease:
    """One held flock; ``release`` (async, as ``store.api.MaildropLease``) or ``release_now``."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release_now(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    async def release(self) -> None:
        self.release_now()


class FileMaildropLocks:
    """flock(2)-based maildrop locks under ``root`` (``<data_dir>/locks``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made = False

    def path(self, mailbox_id: int) -> Path:
        return self.root / f"pop3-{int(mailbox_id)}.lock"

    def try_acquire(self, mailbox_id: int) -> FileLease | None:
        """The lease, or ``None`` if another session holds the maildrop. Never blocks."""
        if not self._made:
            self.root.mkdir(parents=True, exist_ok=True)
            self._made = True
        # O_CLOEXEC: a forked helper must not inherit (and keep) the lock
        fd = os.open(self.path(mailbox_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never block the event loop
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        return FileLease(fd)
