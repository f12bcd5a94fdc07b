"""RFC 3501 §2.3.2 across processes: with two `mailhouse serve` nodes on one PostgreSQL store,
IMAP4rev1 sessions on both nodes selecting (or being told about new mail) at the same moment
get each message as \\Recent exactly once, in exactly one session (the claim is one atomic
statement in the store, `Store.claim_recent`)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.cluster.test_two_nodes import USER, Cluster, cluster, inbox_messages, send
from tests.imapserver.server_helpers import RawIMAP

SESSIONS_PER_NODE = 4
__all__ = ["cluster"]  # the two-node fixture of test_two_nodes.py


def _wait_delivered(cluster: Cluster, tmp: Path, n: int) -> list[int]:
    end = time.time() + 20
    while time.time() < end:
        uids = [m.uid for m, _ in inbox_messages(cluster.url, tmp)]
        if len(uids) >= n:
            return uids
        time.sleep(0.1)
    raise AssertionError("mail not delivered")


def _all_at_once(sessions: list[RawIMAP], command: bytes) -> list[list[bytes]]:
    """Send ``command`` on every session before reading any answer (concurrent on the server)."""
    for i, c in enumerate(sessions):
        c.send(b"C%d " % i + command + b"\r\n")
    return [c.until_tagged(b"C%d" % i) for i, c in enumerate(sessions)]


def _recent_uids(c: RawIMAP) -> set[int]:
    r = c.cmd("FETCH 1:* (UID FLAGS)")
    out = set()
    for ln in r:
        m = re.match(rb"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\)", ln)
        if m and b"\\Recent" in m.group(2).split():
            out.add(int(m.group(1)))
    return out


def test_recent_exactly_once_across_two_nodes(cluster: Cluster, tmp_path: Path) -> None:
    sessions: list[RawIMAP] = []
    try:
        for node in cluster.nodes:
            for _ in range(SESSIONS_PER_NODE):
                c = RawIMAP(node.addr("imaps"))
                c.login(USER.split("@")[0])
                sessions.append(c)
        for i in range(5):
            send(cluster.b, f"first-{i}")
        first = _wait_delivered(cluster, tmp_path, 5)

        # all eight sessions (four per process) SELECT at the same moment
        replies = _all_at_once(sessions, b"SELECT INBOX")
        counts = []
        for r in replies:
            assert r[-1].split(b" ")[1] == b"OK", r
            m = next(re.match(rb"\* (\d+) RECENT", ln) for ln in r if b" RECENT" in ln)
            assert m is not None, r
            counts.append(int(m.group(1)))
        assert sum(counts) == 5, counts
        seen: list[int] = []
        for c in sessions:
            seen += sorted(_recent_uids(c))
        assert sorted(seen) == sorted(first), seen  # each message recent in exactly one session

        # new mail while all are selected: every session learns of it at the same moment
        for i in range(3):
            send(cluster.a, f"second-{i}")
        allu = _wait_delivered(cluster, tmp_path, 8)
        new = sorted(set(allu) - set(first))
        replies = _all_at_once(sessions, b"NOOP")
        for r in replies:
            assert b"* 8 EXISTS" in r, r
        seen = []
        for c in sessions:
            seen += sorted(_recent_uids(c) & set(new))
        assert sorted(seen) == new, seen
        # EXAMINE does not claim (RFC 3501 §6.3.2) and sees nothing left to claim
        extra = RawIMAP(cluster.a.addr("imaps"))
        extra.login(USER.split("@")[0])
        r = extra.cmd("EXAMINE INBOX")
        assert b"* 0 RECENT" in r, r
        extra.close()
    finally:
        for c in sessions:
            c.close()
