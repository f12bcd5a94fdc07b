"""The one "need more data" sentinel shared by every sans-IO core in ``proto/``.

Every core (``smtp``, ``smtp_client``, ``pop3``, ``imap``) follows the h11 shape: bytes in with
``receive_data()``, typed events out of ``next_event()``, and :data:`NEED_DATA` when no complete
event is buffered yet. Each core re-exports the sentinel under the same name, so
``from mailhouse.proto.smtp import NEED_DATA`` and ``from mailhouse.proto.imap import NEED_DATA``
name the very same object.

Invariants:

* There is exactly one sentinel: ``smtp.NEED_DATA is pop3.NEED_DATA is imap.NEED_DATA``, so an
  adapter or the connection runtime can test ``ev is NEED_DATA`` whatever the protocol.
* It is an enum member (not ``None`` or a bare ``object()``) so ``mypy`` can narrow
  ``Event | NeedData`` with ``is``.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["NEED_DATA", "NeedData"]


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA` (a one-member enum, so ``is`` narrows it)."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by a core's ``next_event()`` when more bytes are required."""
