"""New keywords are announced (untagged FLAGS + OK [PERMANENTFLAGS]) before any FETCH uses them.

RFC 9051 §7.3.5 / RFC 3501 §7.2.6 (FLAGS), §7.1 (PERMANENTFLAGS): every session with the mailbox
selected — the one that stored the keyword included, IDLE and NOTIFY sessions too — must have seen
a FLAGS response listing a keyword before a FETCH response carries it. imaptest's stress mode
reports violations as "Keyword used without being in FLAGS". Real sockets: several connections to
one server, and a keyword set by a separate client process.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import textwrap

from tests.imapserver.server_helpers import RawIMAP, raw_client, tls_ctx  # noqa: F401
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

USER = "heidi"
_FLAGS = re.compile(rb"^\* FLAGS \(([^)]*)\)")
_PERM = re.compile(rb"^\* OK \[PERMANENTFLAGS \(([^)]*)\)\]")
_FETCH_FLAGS = re.compile(rb"^\* \d+ FETCH \(.*FLAGS \(([^)]*)\)")


class Watcher:
    """Checks one session's response stream: every keyword a FETCH carries was in a FLAGS
    (and, read-write, a PERMANENTFLAGS) response sent earlier on the same connection."""

    def __init__(self, c: RawIMAP) -> None:
        self.c = c
        self.flags: set[bytes] = set()
        self.perm: set[bytes] = set()
        self.fetched: set[bytes] = set()  # keywords seen in FETCH responses
        self.readonly = False  # EXAMINE: PERMANENTFLAGS is () (RFC 9051 §6.3.2)

    def check(self, lines: list[bytes]) -> list[bytes]:
        for ln in lines:
            if m := _FLAGS.match(ln):
                self.flags |= set(m.group(1).split())
            elif m := _PERM.match(ln):
                self.perm |= set(m.group(1).split())
            elif m := _FETCH_FLAGS.match(ln):
                for kw in m.group(1).split():
                    if kw.startswith(b"\\"):
                        continue
                    assert kw in self.flags, f"keyword {kw!r} used before FLAGS announced it: {lines}"
                    assert self.readonly or kw in self.perm, f"keyword {kw!r} not in PERMANENTFLAGS: {lines}"
                    self.fetched.add(kw)
        return lines

    def cmd(self, text: str) -> list[bytes]:
        return self.check(self.c.cmd(text))


def _setup(mh: MailhouseProcess) -> tuple[str, Watcher, Watcher]:
    box = f"kw-{secrets.token_hex(4)}"
    a = Watcher(raw_client(mh, USER))
    b = Watcher(raw_client(mh, USER))
    assert b" OK " in a.c.cmd(f"CREATE {box}")[-1]
    for i in range(2):
        msg = f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode()
        a.c.send(b"A%d APPEND %s {%d+}\r\n" % (i, box.encode(), len(msg)) + msg + b"\r\n")
        assert b" OK " in a.c.until_tagged(b"A%d" % i)[-1]
    a.cmd(f"SELECT {box}")
    b.cmd(f"SELECT {box}")
    return box, a, b


def test_store_announces_to_storing_and_other_session(imap_server: MailhouseProcess) -> None:
    box, a, b = _setup(imap_server)
    out = a.cmd("STORE 1 +FLAGS ($Label1)")
    assert any(_FLAGS.match(ln) and b"$Label1" in ln for ln in out), out  # the storing session too
    assert b"$Label1" in a.fetched
    out = b.cmd("NOOP")
    assert b"$Label1" in b.fetched, out
    out = b.cmd("FETCH 1:* FLAGS")
    # a later SELECT lists it from the start
    c = Watcher(raw_client(imap_server, USER))
    c.readonly = True
    out = c.cmd(f"EXAMINE {box}")
    assert b"$Label1" in c.flags
    out = c.cmd("FETCH 1 FLAGS")
    assert b"$Label1" in out[0]
    for w in (a, b, c):
        w.c.close()


def test_store_silent_then_fetch(imap_server: MailhouseProcess) -> None:
    _box, a, b = _setup(imap_server)
    a.cmd("STORE 2 +FLAGS.SILENT ($Silent)")
    assert b"$Silent" in a.flags  # announced although no FETCH was sent
    a.cmd("FETCH 2 FLAGS")
    assert b"$Silent" in a.fetched
    b.cmd("FETCH 2 FLAGS")  # b has not synced yet: old flags, or the new ones announced first
    b.cmd("FETCH 2 FLAGS")
    assert b"$Silent" in b.fetched
    a.c.close()
    b.c.close()


def test_append_and_copy_bring_new_keywords(imap_server: MailhouseProcess) -> None:
    box, a, b = _setup(imap_server)
    msg = b"Subject: new\r\n\r\nnew\r\n"
    a.c.send(b"A9 APPEND %s ($Appended) {%d+}\r\n" % (box.encode(), len(msg)) + msg + b"\r\n")
    a.check(a.c.until_tagged(b"A9"))
    a.cmd("FETCH 3 FLAGS")
    assert b"$Appended" in a.fetched
    b.cmd("NOOP")
    b.cmd("FETCH 1:* FLAGS")
    assert b"$Appended" in b.fetched
    # COPY from another mailbox carrying a keyword the view has not seen
    other = f"{box}-src"
    a.cmd(f"CREATE {other}")
    a.c.send(b"A10 APPEND %s ($Copied) {%d+}\r\n" % (other.encode(), len(msg)) + msg + b"\r\n")
    a.check(a.c.until_tagged(b"A10"))
    x = Watcher(raw_client(imap_server, USER))
    x.cmd(f"SELECT {other}")
    x.cmd(f"COPY 1 {box}")
    b.cmd("NOOP")
    b.cmd("FETCH 1:* FLAGS")
    assert b"$Copied" in b.fetched
    for w in (a, b, x):
        w.c.close()


def test_idle_and_notify_sessions_from_another_process(imap_server: MailhouseProcess) -> None:
    box, a, b = _setup(imap_server)
    n = Watcher(raw_client(imap_server, USER))
    n.cmd(f"SELECT {box}")
    out = n.cmd("NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange))")
    assert b" OK " in out[-1], out
    b.c.send(b"I1 IDLE\r\n")
    assert b.c.line().startswith(b"+ ")
    # the keyword is set by a separate client process (imaplib), not by this test's sockets
    host, port = imap_server.addr("imaps")
    script = textwrap.dedent(
        f"""
        import imaplib, ssl
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        c = imaplib.IMAP4_SSL({host!r}, {port}, ssl_context=ctx, timeout=20)
        c.login("{USER}@example.org", {PASSWORD!r})
        c.select({box!r})
        assert c.store("1", "+FLAGS", "($FromElsewhere)")[0] == "OK"
        c.logout()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    # IDLE: read until the FETCH for message 1 arrives
    got: list[bytes] = []
    while not any(_FETCH_FLAGS.match(ln) for ln in got):
        got.append(b.c.line())
    b.check(got)
    assert b"$FromElsewhere" in b.fetched
    b.c.send(b"DONE\r\n")
    b.check(b.c.until_tagged(b"I1"))
    # NOTIFY: pushed while no command is in progress
    got = []
    while not any(_FETCH_FLAGS.match(ln) for ln in got):
        got.append(n.c.line())
    n.check(got)
    assert b"$FromElsewhere" in n.fetched
    a.cmd("NOOP")
    assert b"$FromElsewhere" in a.fetched
    for w in (a, b, n):
        w.c.close()
