"""The IMAP state of one node: what the sessions of its listeners (imap and imaps) share.

RFCs: RFC 3501 §2.3.2 (\\Recent: one session gets each message as recent), RFC 5464 (METADATA
entry index), RFC 9051 §7 (the updates the change hub and the shared index feed).

One :class:`ImapNode` per node, made by ``server.Server`` and handed to every
``session.IMAPSession``; handlers reach it as ``s.node`` (``context.SessionContext``). It
replaces the module globals the package used to keep, so two nodes in one process (tests,
benchmarks) share nothing, while the sessions of one node share:

* ``hub`` — the store change feed (``changes.ChangeHub``), one subscription per account;
* ``claims`` — the \\Recent claims (``selected.RecentClaims``);
* ``messages`` — the parsed-message cache and the blob reads in flight
  (``selected.MessageLoader``, also ``query``'s loader);
* ``index`` — the shared mailbox indexes (``index.IndexRegistry``; docs/architecture.md
  §Performance (IMAP));
* ``metadata_locks`` — the METADATA entry-index locks (``metadata.MetadataLocks``);
* ``big`` — structures of big messages and their parse pool (``fetch_stream.BigMessages``:
  FETCH streams those from the blob, issue 12 item 2).

Invariants: nothing here does I/O when built; every member works on the node's one store.
"""

from __future__ import annotations

from mailhouse.store.api import Store

from .changes import ChangeHub
from .fetch_stream import BigMessages
from .index import IndexRegistry
from .metadata import MetadataLocks
from .selected import MessageLoader, RecentClaims


class ImapNode:
    """The per-node IMAP state (see the module docstring)."""

    __slots__ = ("big", "claims", "hub", "index", "messages", "metadata_locks")

    def __init__(self, store: Store) -> None:
        self.hub = ChangeHub(store)
        self.claims = RecentClaims(store)
        self.messages = MessageLoader(store)
        self.index = IndexRegistry(store)
        self.metadata_locks = MetadataLocks()
        self.big = BigMessages(store)
