"""OBJECTID (RFC 8474): MAILBOXID, EMAILID and THREADID of mailboxes and messages.

The ids come from what the store keeps for ever, never from per-node state, so every node (and
``mailhouse store copy``, which keeps mailbox ids, UIDVALIDITYs and the EMAILID column) gives
the same answer:

* **MAILBOXID** (RFC 8474 §4) = ``F`` + mailbox row id + ``-`` + UIDVALIDITY. RENAME keeps the
  row and its UIDVALIDITY, so the id survives it (§4.2); a mailbox deleted and created again
  gets a new UIDVALIDITY (``Tx.next_uidvalidity`` only grows), so an id is never reused even
  where SQLite hands out a freed row id again (§4: "MUST NOT be reused").
* **EMAILID** (§5.1) is stored with the message (``MessageRecord.emailid``, store migration 7):
  ``M`` + the blob key the content was first stored under (``store.api.emailid_for_blob``).
  The blob is the immutable content instance: MOVE and COPY pass the id on (§5.1: MOVE MUST
  keep the EMAILID, COPY MAY), one delivery to several mailboxes shares it (the same content),
  a second APPEND of the same octets gets a new blob and a new id; ``store copy`` copies the
  column, so the id survives a blob key the destination chooses anew.
* **THREADID** (§5.2) = ``T`` + 24 hex of SHA-256 of the thread's root Message-ID: the first
  msg-id of ``References`` (RFC 5322 §3.6.4: it starts with the root's), else the first of
  ``In-Reply-To``, else the message's own ``Message-ID``. Every message of a thread whose replies carry
  References (what RFC 5322 asks of them) gets one THREADID, on every node and in every
  mailbox and account; the id is a function of the immutable header, so it never changes. A
  message with no msg-id at all is a thread of its own (``T`` + its EMAILID).
  Limitation: a reply that names only its parent in In-Reply-To, not the root, starts its own
  thread id.

Invariants: every id matches RFC 8474 §7 ``objectid = 1*255(ALPHA / DIGIT / "_" / "-")``
(:func:`is_objectid`); nothing here raises on any header bytes.
"""

from __future__ import annotations

import hashlib
import re

from mailhouse.message.parse import MessagePart

__all__ = ["is_objectid", "mailboxid", "threadid"]

_OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_MSGID = re.compile(rb"<([^<>]*)>")


def is_objectid(s: str) -> bool:
    """RFC 8474 §7: ``objectid = 1*255(ALPHA / DIGIT / "_" / "-")``."""
    return _OBJECTID.fullmatch(s) is not None


def mailboxid(mailbox_id: int, uidvalidity: int) -> str:
    """RFC 8474 §4 MAILBOXID of a mailbox incarnation."""
    return f"F{mailbox_id}-{uidvalidity}"


def _first_id(value: bytes | None) -> bytes | None:
    for m in _MSGID.findall(value or b""):
        got = re.sub(rb"\s+", b"", m)
        if got:
            return got
    return None


def threadid(tree: MessagePart, emailid: str) -> str:
    """RFC 8474 §5.2 THREADID: the thread root's Message-ID, hashed (see the module docstring)."""
    root = (
        _first_id(b" ".join(tree.get_all(b"references")))
        or _first_id(tree.get(b"in-reply-to"))
        or _first_id(tree.get(b"message-id"))
    )
    if root is None:
        return (
            "T" + emailid[1:]
            if is_objectid(emailid)
            else "T" + hashlib.sha256(emailid.encode()).hexdigest()[:24]
        )
    return "T" + hashlib.sha256(root).hexdigest()[:24]
