"""UNAUTHENTICATE (RFC 8437) and the multi-mailbox ESEARCH command (RFC 7377) over real sockets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imapserver.server_helpers import RawIMAP, deliver, start_server, tagged
from tests.mailhouse_proc import PASSWORD, MailhouseProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(Path(tmp_path_factory.mktemp("imap-unauth-esearch")), users=("una", "multi"))
    try:
        yield mh
    finally:
        mh.stop()


def _client(mh: MailhouseProcess, user: str) -> RawIMAP:
    c = RawIMAP(mh.addr("imaps"))
    c.login(user)
    return c


def _append(c: RawIMAP, mailbox: str, subject: str) -> None:
    msg = f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    r = c.cmd(b"APPEND " + mailbox.encode() + b" {%d+}\r\n" % len(msg) + msg)
    assert tagged(r).startswith(b"OK"), r


def test_unauthenticate_returns_to_not_authenticated(server: MailhouseProcess) -> None:
    c = RawIMAP(server.addr("imaps"))
    r = c.cmd("UNAUTHENTICATE")
    assert tagged(r).startswith(b"BAD"), r  # not in not-authenticated state
    c.login("una")
    caps = b" ".join(c.cmd("CAPABILITY"))
    assert b" UNAUTHENTICATE" in caps  # RFC 8437 §2: advertised once it can be used
    assert b"* ENABLED CONDSTORE" in c.cmd("ENABLE CONDSTORE")
    assert tagged(c.cmd("SELECT INBOX")).startswith(b"OK [READ-WRITE]")
    r = c.cmd("UNAUTHENTICATE")
    assert tagged(r).startswith(b"OK [CAPABILITY "), r
    code = r[-1].split(b"]", 1)[0]
    assert b"AUTH=PLAIN" in code and b"UNAUTHENTICATE" not in code
    # back in the not authenticated state: no mailbox, no session commands
    assert tagged(c.cmd("SELECT INBOX")).startswith(b"BAD")
    assert tagged(c.cmd("FETCH 1 FLAGS")).startswith(b"BAD")
    caps = b" ".join(c.cmd("CAPABILITY"))
    assert b"AUTH=PLAIN" in caps and b"UNAUTHENTICATE" not in caps
    # the TLS connection stays usable for a new login; ENABLEd extensions were dropped
    assert b" OK " in c.cmd(f'LOGIN una@example.org "{PASSWORD}"')[-1]
    assert b"* ENABLED CONDSTORE" in c.cmd("ENABLE CONDSTORE")
    assert tagged(c.cmd("SELECT INBOX")).startswith(b"OK")
    c.cmd("LOGOUT")
    c.close()


def _esearch(lines: list[bytes]) -> dict[str, bytes]:
    """MAILBOX name → the result items of each ``* ESEARCH`` line."""
    out: dict[str, bytes] = {}
    for ln in lines:
        m = re.match(rb'\* ESEARCH \(TAG "[^"]+" MAILBOX "?([^" )]+)"? UIDVALIDITY \d+\) UID (.*)', ln)
        if m:
            out[m.group(1).decode()] = m.group(2)
    return out


def test_esearch_over_several_mailboxes(server: MailhouseProcess) -> None:
    deliver(server, "multi", "alpha one")
    deliver(server, "multi", "beta")
    c = _client(server, "multi")
    assert b"MULTISEARCH" in b" ".join(c.cmd("CAPABILITY"))
    for name in ("Proj", "Proj/2024", "Proj/2024/Q1", "Misc"):
        assert tagged(c.cmd(f"CREATE {name}")).startswith(b"OK")
    _append(c, "Proj", "alpha two")
    _append(c, "Proj/2024", "alpha three")
    _append(c, "Proj/2024/Q1", "alpha deep")
    _append(c, "Misc", "gamma")
    for _ in range(50):  # the delivery above is asynchronous
        if b"MESSAGES 2" in c.cmd("STATUS INBOX (MESSAGES)")[0]:
            break
    # authenticated state, every personal mailbox; no line for a mailbox without matches
    r = c.cmd("ESEARCH IN (PERSONAL) SUBJECT alpha")
    assert tagged(r).startswith(b"OK"), r
    assert _esearch(r) == {
        "INBOX": b"ALL 1",
        "Proj": b"ALL 1",
        "Proj/2024": b"ALL 1",
        "Proj/2024/Q1": b"ALL 1",
    }
    r = c.cmd("ESEARCH IN (SUBTREE-ONE Proj) RETURN (COUNT) SUBJECT alpha")
    assert _esearch(r) == {"Proj": b"COUNT 1", "Proj/2024": b"COUNT 1"}
    r = c.cmd("ESEARCH IN (SUBTREE Proj/2024 MAILBOXES (Misc INBOX)) RETURN (MIN COUNT) ALL")
    assert _esearch(r) == {
        "INBOX": b"MIN 1 COUNT 2",
        "Proj/2024": b"MIN 1 COUNT 1",
        "Proj/2024/Q1": b"MIN 1 COUNT 1",
        "Misc": b"MIN 1 COUNT 1",
    }
    r = c.cmd("ESEARCH IN (MAILBOXES (Misc Nowhere)) SUBJECT nothing-matches")
    assert tagged(r).startswith(b"OK") and not _esearch(r)
    # without IN the source is the selected mailbox (RFC 7377 §2)
    assert tagged(c.cmd("ESEARCH SUBJECT alpha")).startswith(b"BAD")
    assert tagged(c.cmd("ESEARCH IN (SELECTED) SUBJECT alpha")).startswith(b"BAD")
    assert tagged(c.cmd("SELECT INBOX")).startswith(b"OK")
    r = c.cmd("ESEARCH SUBJECT beta")
    assert _esearch(r) == {"INBOX": b"ALL 2"}
    r = c.cmd("ESEARCH IN (SELECTED INBOXES) SUBJECT alpha")
    assert _esearch(r) == {"INBOX": b"ALL 1"}
    # SAVE only with the selected mailbox as the only source
    assert tagged(c.cmd("ESEARCH IN (PERSONAL) RETURN (SAVE) ALL")).startswith(b"BAD")
    r = c.cmd("ESEARCH IN (SELECTED) RETURN (SAVE) SUBJECT beta")
    assert tagged(r).startswith(b"OK") and not _esearch(r)
    r = c.cmd("UID SEARCH RETURN (ALL) UID $")
    assert any(ln.endswith(b"UID ALL 2") for ln in r), r
    c.cmd("LOGOUT")
    c.close()
