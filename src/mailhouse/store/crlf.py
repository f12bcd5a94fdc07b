"""Line-ending normalisation applied to every message before it is stored.

Invariant of the mail store (see `store/api.py`): message blobs use CRLF line endings
(RFC 5322 §2.1) and end with CRLF, so `MessageRecord.size` is exactly the octet count
that IMAP `BODY[]`/`RFC822.SIZE` and POP3 `RETR`/`LIST` report — nothing has to be
re-read or recomputed to answer STAT, LIST or RFC822.SIZE.
"""

from __future__ import annotations


def to_crlf(data: bytes) -> bytes:
    """Bare LF and bare CR become CRLF; a missing final line ending is added."""
    crlf = data.count(b"\r\n")
    if data.endswith(b"\r\n") and data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data  # already normalised (issue 12 item 2: no copies of a big message)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\n" in data:
        data = data.replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data
