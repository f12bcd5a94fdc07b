"""``X-Spam-Status`` / ``X-Spam-Score`` / ``X-Spam-Flag`` in SpamAssassin's format, so the
filters mail clients and Sieve scripts already have keep working::

    X-Spam-Flag: YES                      (only when the message is spam)
    X-Spam-Score: 7.2
    X-Spam-Status: Yes, score=7.2 required=5.0 tests=GTUBE,HTML_ONLY autolearn=no
    \tversion=Mailhouse

Fields of these names that arrived with the message are removed first: a sender must not
pre-label its own mail as clean (SpamAssassin does the same with its own fields).
"""

from __future__ import annotations

import re

from mailhouse.message.headers import split_header_block
from mailhouse.spam.rules import Hit

__all__ = ["OUR_FIELDS", "fields", "strip_incoming"]

OUR_FIELDS = (b"x-spam-status", b"x-spam-score", b"x-spam-flag")
#: RFC 5322 §2.1.1: lines SHOULD be at most 78 characters; the tests= list is folded.
FOLD_AT = 76


def fields(score: float, required: float, hits: list[Hit]) -> bytes:
    """The three (or two) header lines, CRLF-terminated, to prepend."""
    spam = score >= required
    names = ",".join(sorted(h.name for h in hits)) or "none"
    status = (
        f"{'Yes' if spam else 'No'}, score={score:.1f} required={required:.1f} tests={names} autolearn=no"
    )
    # fold between words, and inside the tests= list after a comma, as SpamAssassin does
    pieces: list[tuple[str, str]] = []  # (separator before it unless folded there, text)
    for word in (status + " version=Mailhouse").split(" "):
        for j, piece in enumerate(re.findall(r"[^,]+,?|,", word)):
            pieces.append(("" if j else " ", piece))
    folded: list[str] = []
    line = "X-Spam-Status:"
    for sep, piece in pieces:
        if len(line) + len(sep) + len(piece) > FOLD_AT:
            folded.append(line)
            line = piece  # RFC 5322 §2.2.3: the fold (CRLF TAB) is the separator
        else:
            line += sep + piece
    folded.append(line)
    out = "\r\n\t".join(folded) + "\r\n"
    out = f"X-Spam-Score: {score:.1f}\r\n" + out
    if spam:
        out = "X-Spam-Flag: YES\r\n" + out
    return out.encode("ascii", "replace")


def strip_incoming(head: bytes) -> bytes:
    """HEAD without the X-Spam-* fields named in `OUR_FIELDS`."""
    raw, spans, _ = split_header_block(head)
    cut = [span for (name, _), span in zip(raw, spans, strict=True) if name.lower() in OUR_FIELDS]
    if not cut:
        return head
    out, pos = [], 0
    for s, e in cut:
        out.append(head[pos:s])
        pos = e
    out.append(head[pos:])
    return b"".join(out)
