"""IMAP grammar: commands that change messages.

STORE with UNCHANGEDSINCE (RFC 9051 §6.4.6; RFC 7162 §3.1.3), COPY and MOVE (RFC 9051 §6.4.7,
§6.4.8), EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, §6.4.9).

Each ``parse_*`` function has the signature ``(r: Reader, uid: bool) -> CommandArgs`` (the
:data:`~mailhouse.proto.imap.grammar.ArgParser` shape): it is called by
:func:`~mailhouse.proto.imap.grammar.parse_command` with the cursor just after the command name
(``uid`` True for a ``UID`` form), reads the arguments and stops; ``parse_command`` checks that
the line ends there.

Invariants:

* Pure syntax: no mailbox state, no policy, no I/O; stdlib only.
* Every refusal is a :class:`~mailhouse.proto.imap.errors.ParseError` raised through the
  :class:`~mailhouse.proto.imap.reader.Reader` (the receiver answers it with BAD); client text
  echoed in an error is cut to 40 characters.
* No recursion: every parenthesised construct here has a fixed grammar depth.
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
