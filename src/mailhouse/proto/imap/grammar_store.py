"""IMAP grammar: commands that change messages.

STORE with UNCHANGEDSINCE (RFC 9051 §6.4.6; RFC 7162 §3.1.3), COPY and MOVE (RFC 9051 §6.4.7,
§6.4.8), EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, §6.4.9).

The ``parse_*`` functions follow the conventions of :mod:`~mailhouse.proto.imap.grammar`
(signature, pure syntax, refusals).

No recursion: every parenthesised construct here has a fixed grammar depth.
"""

from __future__ import annotations

from mailhouse.proto.imap.commands import (
    CopyMove,
    Expunge,
    NoArgs,
    Store,
    StoreMode,
)
from mailhouse.proto.imap.reader import Reader


def parse_store(r: Reader, uid: bool) -> Store:
    r.sp()
    seq = r.seqset()
    r.sp()
    unchanged: int | None = None
    if r.try_take(b"("):  # RFC 7162 §3.1.3: store-modifier "UNCHANGEDSINCE" SP mod-sequence-valzer
        if not r.try_take_ci(b"UNCHANGEDSINCE"):
            r.error("Unknown STORE modifier")
        r.sp()
        unchanged = r.number64()
        r.expect(b")")
        r.sp()
    mode = StoreMode.ADD if r.try_take(b"+") else StoreMode.REMOVE if r.try_take(b"-") else StoreMode.REPLACE
    word = r.atom().upper()
    if word not in ("FLAGS", "FLAGS.SILENT"):  # RFC 9051 §9: store-att-flags
        r.error("Expected FLAGS or FLAGS.SILENT")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        fl = [r.flag()]
        while not r.eol():
            r.sp()
            fl.append(r.flag())
        flags = tuple(fl)
    return Store(uid, seq, mode, word.endswith(".SILENT"), flags, unchanged)


def parse_copy(r: Reader, uid: bool) -> CopyMove:
    r.sp()
    seq = r.seqset()
    r.sp()
    return CopyMove(uid, seq, r.mailbox())


def parse_expunge(r: Reader, uid: bool) -> Expunge | NoArgs:
    if uid:  # RFC 9051 §6.4.9: "UID EXPUNGE" SP sequence-set
        r.sp()
        return Expunge(r.seqset())
    return Expunge()
