"""RFC 1939 §6: DELE takes effect only in UPDATE state after QUIT.

The server process is killed with SIGKILL after DELE and before QUIT; after a restart
every message is still there. Then a clean QUIT removes them for good.
"""

from __future__ import annotations

import poplib
from pathlib import Path

from .conftest import PLAINTEXT_OK, deliver, login, new_account, sample, start_server


def test_kill_before_quit_deletes_nothing(tmp_path: Path) -> None:
    mh = start_server(tmp_path, PLAINTEXT_OK)
    try:
        user = new_account(mh)
        deliver(mh, user, [sample(i) for i in range(1, 6)])
        c = poplib.POP3(*mh.addr("pop3"), timeout=30)
        login(c, user)
        count, total = c.stat()
        uidls = c.uidl()[1]
        assert count == 5
        for n in range(1, 6):
            c.retr(n)
            assert c.dele(n).startswith(b"+OK")
        assert c.stat() == (0, 0)
        mh.kill9()  # SIGKILL to the whole serve process group, mid-session
        c.close()

        mh.start()
        c = poplib.POP3(*mh.addr("pop3"), timeout=30)
        login(c, user)  # no stale lock after the kill
        assert c.stat() == (count, total)
        assert c.uidl()[1] == uidls  # same messages, same UIDLs
        for n in range(1, 6):
            c.dele(n)
        assert c.quit().startswith(b"+OK")

        c = poplib.POP3(*mh.addr("pop3"), timeout=30)
        login(c, user)
        assert c.stat() == (0, 0)
        c.quit()
    finally:
        mh.stop()
