"""A keyword spelled NIL: answered as Dovecot 2.3 answers it (the peer fixture is the oracle).

Issue 13 §1 asked to "refuse it as Dovecot does"; Dovecot 2.3.19 (Debian 12) in fact ACCEPTS it:
``STORE 1 +FLAGS NIL`` / ``(NiL $x)`` → OK with the keyword announced in FLAGS,
``APPEND box (NIL) {n}`` → OK, ``SEARCH KEYWORD NIL`` → OK; only a quoted ``"NIL"`` in a flag
list is BAD (not an atom), as RFC 9051 §9 ``flag-keyword = atom`` has it. So do we: this test
pins the same tagged status for every command, on both servers, over real sockets.
(Not compared: ``SEARCH KEYWORD "NIL"`` — Dovecot takes a quoted keyword there, we answer BAD as
the grammar's ``"KEYWORD" SP flag-keyword`` has it; and the case of keywords — Dovecot folds
``nil`` into an existing ``NIL``, we keep them apart.)
"""

from __future__ import annotations

import secrets
from typing import Any

from tests.imapserver.imap_wire import RawIMAP as WireIMAP
from tests.imapserver.server_helpers import raw_client
from tests.mailhouse_proc import MailhouseProcess

USER = "judy"
DC_USER, DC_PASS = "nil@example.test", "nil-pw"
MSG = b"Subject: nil\r\n\r\nbody\r\n"

COMMANDS = [
    "STORE 1 +FLAGS NIL",
    "STORE 1 +FLAGS (NiL $x)",
    'STORE 1 FLAGS ("NIL")',
    "STORE 1 -FLAGS (nil)",
    "SEARCH KEYWORD NIL",
    "SEARCH UNKEYWORD nil",
    "FETCH 1 FLAGS",
]


def _status(tagged: bytes) -> bytes:
    return tagged.split(b" ", 2)[1]


def test_nil_keyword_answers_match_dovecot(imap_server: MailhouseProcess, dovecot_factory: Any) -> None:
    dc = dovecot_factory(users={DC_USER: DC_PASS}, pop3_port=0)
    theirs = WireIMAP(dc.host, dc.imap_port)
    theirs.cmd(f'LOGIN "{DC_USER}" "{DC_PASS}"')
    ours = raw_client(imap_server, USER)
    box = f"nil-{secrets.token_hex(4)}"
    ours.cmd(f"CREATE {box}")
    theirs.cmd(f"CREATE {box}")
    for flags in ("", "(NIL) ", "(\\Seen nil) "):
        line = b"APPEND %s %s{%d+}\r\n" % (box.encode(), flags.encode(), len(MSG)) + MSG
        mine = ours.cmd(line)[-1]
        theirs.sock.sendall(b"G0 " + line + b"\r\n")
        ref = theirs._response()
        while not ref.startswith(b"G0 "):
            ref = theirs._response()
        assert _status(mine) == _status(ref) == b"OK", (flags, mine, ref)
    sel = ours.cmd(f"SELECT {box}")
    assert any(ln.startswith(b"* FLAGS (") and b" NIL" in ln for ln in sel), sel  # a keyword like any
    theirs.cmd(f"SELECT {box}")
    for c in COMMANDS:
        mine = ours.cmd(c)
        _untagged, ref = theirs.cmd(c, check=False)
        assert _status(mine[-1]) == _status(ref), (c, mine[-1], ref)
    ours.close()
    theirs.sock.close()
