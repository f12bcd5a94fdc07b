"""Shared mailboxes across nodes (issue 13 §3): with two `mailhouse serve` nodes on one
PostgreSQL store, rights set on one node apply on the other at the next command, and a reader
idling on a shared folder on node A is woken by mail delivered to the owner through node B
(the change feed of the owner's account, `imapserver/commands/idle.py`)."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.test_two_nodes import USER, Cluster, cluster, send
from tests.imapserver.server_helpers import RawIMAP

__all__ = ["cluster"]  # the two-node fixture of test_two_nodes.py


def test_rights_and_idle_across_two_nodes(cluster: Cluster, tmp_path: Path) -> None:
    owner = RawIMAP(cluster.b.addr("imaps"))  # alice on node B
    reader = RawIMAP(cluster.a.addr("imaps"))  # bob on node A
    try:
        owner.login("alice")
        reader.login("bob")
        shared = f'"Other Users/{USER}/INBOX"'
        assert b"[NONEXISTENT]" in reader.cmd(f"EXAMINE {shared}")[-1]
        assert b" OK " in owner.cmd("SETACL INBOX bob@example.org lr")[-1]
        sel = reader.cmd(f"EXAMINE {shared}")
        assert b" OK [READ-ONLY]" in sel[-1], sel
        before = next(int(ln.split()[1]) for ln in sel if ln.endswith(b" EXISTS"))
        reader.send(b"I1 IDLE\r\n")
        assert reader.line().startswith(b"+")
        send(cluster.b, "shared-1")  # delivered through node B into alice's INBOX
        while True:  # the socket timeout (20 s) bounds the wait: no wake-up fails the test
            ln = reader.line()
            if ln.endswith(b" EXISTS") and int(ln.split()[1]) > before:
                break
        reader.send(b"DONE\r\n")
        assert b"I1 OK" in reader.until_tagged(b"I1")[-1]
        # a right taken away on node B applies on node A at the next command
        assert b" OK " in owner.cmd("SETACL INBOX bob@example.org -r")[-1]
        assert b"[NOPERM]" in reader.cmd("FETCH 1 (FLAGS)")[-1]
    finally:
        owner.close()
        reader.close()
