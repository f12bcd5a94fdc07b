"""RFC 9051 §7.3.5 across nodes: a keyword stored through one `mailhouse serve` node is announced
(`* FLAGS` + `OK [PERMANENTFLAGS]`) to the sessions of the other node — one polling with NOOP,
one in IDLE — before any FETCH response of theirs carries it (two nodes, one PostgreSQL store)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.cluster.test_two_nodes import USER, Cluster, cluster, inbox_messages, send
from tests.imapserver.server_helpers import RawIMAP
from tests.imapserver.test_keyword_announce import _FETCH_FLAGS, Watcher

__all__ = ["cluster"]  # the two-node fixture of test_two_nodes.py


def test_keyword_from_other_node_is_announced_first(cluster: Cluster, tmp_path: Path) -> None:
    send(cluster.a, "kw-1")
    end = time.time() + 20
    while not inbox_messages(cluster.url, tmp_path):
        assert time.time() < end, "mail not delivered"
        time.sleep(0.1)
    login = USER.split("@")[0]
    a, b, idle = (Watcher(RawIMAP(n.addr("imaps"))) for n in (cluster.a, cluster.b, cluster.b))
    for w in (a, b, idle):
        w.c.login(login)
        w.cmd("SELECT INBOX")
    idle.c.send(b"I1 IDLE\r\n")
    assert idle.c.line().startswith(b"+ ")
    a.cmd("STORE 1 +FLAGS ($OtherNode)")
    assert b"$OtherNode" in a.fetched
    end = time.time() + 20
    while b"$OtherNode" not in b.fetched:  # the change reaches node b through the store's feed
        assert time.time() < end, "node b never reported the flag change"
        b.cmd("NOOP")
        time.sleep(0.05)
    got: list[bytes] = []
    while not any(_FETCH_FLAGS.match(ln) for ln in got):
        got.append(idle.c.line())
    idle.check(got)
    assert b"$OtherNode" in idle.fetched
    idle.c.send(b"DONE\r\n")
    idle.check(idle.c.until_tagged(b"I1"))
    for w in (a, b, idle):
        w.c.close()
