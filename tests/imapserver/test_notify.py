"""RFC 5465 NOTIFY end to end: one session with NOTIFY SET, changes made by another session,
by SMTP delivery, or by another process writing to the same store (this test process, through
the store API): MessageNew with its fetch-att list, MessageExpunge, FlagChange, STATUS for
other mailboxes, MailboxName, SubscriptionChange, Mailbox/ServerMetadataChange; the command's
own checks (BAD / NO [BADEVENT])."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailhouse.imapserver import metadata
from tests.imapserver.server_helpers import RawIMAP, deliver, login, raw_client, start_server, tagged
from tests.mailhouse_proc import MailhouseProcess

LOCKS = metadata.MetadataLocks()  # the node's metadata locks, as ImapNode holds them

USERS = ("n1", "n2", "n3", "n4", "n5", "n6")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("notify"), users=USERS)
    try:
        yield mh
    finally:
        mh.stop()


def _in_store(mh: MailhouseProcess, user: str, fn: Any) -> Any:
    """Run ``fn(store, account_id)`` in this (another) process on the server's store."""

    async def run(admin: Any) -> Any:
        acc = await admin.store.get_account(f"{user}@example.org")
        return await fn(admin.store, acc.id)

    return mh.admin(run)


def _lines_until(c: RawIMAP, pred: Any, limit: int = 20) -> list[bytes]:
    """Unsolicited lines (no command in progress) up to the first one satisfying ``pred``."""
    out: list[bytes] = []
    for _ in range(limit):
        ln = c.line()
        out.append(ln)
        if pred(ln):
            return out
    raise AssertionError(out)


def test_message_new_fetch_atts_expunge_flags_selected(server: MailhouseProcess) -> None:
    n = raw_client(server, "n1")
    other = raw_client(server, "n1")
    try:
        assert tagged(n.cmd("SELECT INBOX")).startswith(b"OK")
        assert tagged(other.cmd("SELECT INBOX")).startswith(b"OK")
        r = n.cmd(
            "NOTIFY SET (SELECTED (MessageNew (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
            "MessageExpunge FlagChange))"
        )
        assert tagged(r).startswith(b"OK"), r
        # SMTP delivery (another service of the server): EXISTS, RECENT (rev1), then the FETCH
        # with the requested items, with no command in progress (RFC 5465 §5.2)
        deliver(server, "n1", "pushed one")
        got = _lines_until(n, lambda ln: b"FETCH" in ln)
        assert got[0] == b"* 1 EXISTS", got
        assert got[-1] == (
            b"* 1 FETCH (UID 1 FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)] {23}\r\n"
            b"Subject: pushed one\r\n\r\n)"
        ), got
        # a message this connection appends itself: EXISTS, but no FETCH (§5.2 SHOULD NOT)
        msg = b"Subject: mine\r\n\r\nx\r\n"
        r = n.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))
        assert tagged(r).startswith(b"OK"), r
        assert b"* 2 EXISTS" in r and not any(b"FETCH" in ln for ln in r), r
        # FlagChange by another session: FETCH (FLAGS) pushed
        assert tagged(other.cmd("NOOP")).startswith(b"OK")
        assert tagged(other.cmd("STORE 1 +FLAGS (\\Flagged)")).startswith(b"OK")
        got = _lines_until(n, lambda ln: b"FETCH" in ln)
        assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(.*\\Flagged", got[-1]), got  # §5.1: UID too
        # MessageExpunge with SELECTED: the EXPUNGE is pushed at once
        assert tagged(other.cmd("STORE 1 +FLAGS (\\Deleted)")).startswith(b"OK")
        assert tagged(other.cmd("EXPUNGE")).startswith(b"OK")
        got = _lines_until(n, lambda ln: ln.endswith(b"EXPUNGE"))
        assert got[-1] == b"* 1 EXPUNGE", got
        # a message appended by another process on the same store (the test process)
        uid = _in_store(server, "n1", _append_raw(b"Subject: from elsewhere\r\n\r\nz\r\n"))
        got = _lines_until(n, lambda ln: b"FETCH" in ln)
        assert got[0] == b"* 2 EXISTS", got
        assert got[-1].startswith(
            b"* 2 FETCH (UID %d FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)]" % uid
        ), got
    finally:
        n.close()
        other.close()


def _append_raw(data: bytes) -> Any:
    async def fn(store: Any, acc: int) -> int:
        from mailhouse.store.api import NewMessage

        inbox = await store.get_mailbox(acc, "INBOX")
        recs = await store.deliver(data, [NewMessage(inbox.id, "", len(data))])
        return int(recs[0].uid)

    return fn


def test_message_new_with_search_context_order(server: MailhouseProcess) -> None:
    # RFC 5465 §5.2: EXISTS, then the ESEARCH ADDTO, then the FETCH
    n = raw_client(server, "n2")
    try:
        assert tagged(n.cmd("ENABLE IMAP4rev2")).startswith(b"OK")
        assert tagged(n.cmd("SELECT INBOX")).startswith(b"OK")
        n.send(b"S1 UID SEARCH RETURN (UPDATE) SUBJECT hot\r\n")
        assert n.until_tagged(b"S1")[-1].startswith(b"S1 OK")
        r = n.cmd("NOTIFY SET (SELECTED-DELAYED (MessageNew (UID) MessageExpunge))")
        assert tagged(r).startswith(b"OK"), r
        deliver(server, "n2", "hot news")
        got = _lines_until(n, lambda ln: b"FETCH" in ln)
        assert got == [b"* 1 EXISTS", b'* ESEARCH (TAG "S1") UID ADDTO (0 1)', b"* 1 FETCH (UID 1)"], got
    finally:
        n.close()


def test_status_for_other_mailboxes(server: MailhouseProcess) -> None:
    n = raw_client(server, "n3")
    other = login(server, "n3")
    try:
        assert tagged(n.cmd("ENABLE CONDSTORE")).startswith(b"OK")
        r = n.cmd("NOTIFY SET STATUS (MAILBOXES Archive (MessageNew MessageExpunge FlagChange))")
        assert tagged(r).startswith(b"OK"), r
        assert re.match(
            rb"\* STATUS Archive \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0 HIGHESTMODSEQ \d+\)", r[0]
        ), r
        other.append("Archive", None, None, b"Subject: a\r\n\r\na\r\n")
        line = n.line()
        assert re.match(rb"\* STATUS Archive \(MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ \d+\)", line), line
        other.select("Archive")
        other.store("1", "+FLAGS", "(\\Seen)")
        line = n.line()
        assert re.match(rb"\* STATUS Archive \(UNSEEN 0 HIGHESTMODSEQ \d+ UIDVALIDITY \d+\)", line), line
        # a mailbox outside the filter: nothing (the next line is the NOOP's tagged OK)
        other.append("Drafts", None, None, b"Subject: d\r\n\r\nd\r\n")
        time.sleep(0.5)
        r = n.cmd("NOOP")
        assert r == [r[-1]] and tagged(r).startswith(b"OK"), r
    finally:
        n.close()
        other.logout()


def test_subscription_change(server: MailhouseProcess) -> None:
    n = raw_client(server, "n4")
    other = login(server, "n4")
    try:
        other.create("Topic")  # before NOTIFY: MailboxName is not asked for anyway
        assert tagged(n.cmd("NOTIFY SET (PERSONAL (SubscriptionChange))")).startswith(b"OK")
        other.subscribe("Topic")
        assert n.line() == b'* LIST (\\Subscribed) "/" Topic'
        other.unsubscribe("Topic")
        assert n.line() == b'* LIST () "/" Topic'
        # another process (this one, on the store): a name that is not a mailbox
        _in_store(server, "n4", lambda st, acc: st.set_subscribed(acc, "Gone/box", True))
        assert n.line() == b'* LIST (\\Subscribed \\NonExistent) "/" Gone/box'
        # MailboxName was not asked for: a CREATE elsewhere says nothing
        other.create("Quiet")
        time.sleep(0.5)
        r = n.cmd("NOOP")
        assert r == [r[-1]], r
    finally:
        n.close()
        other.logout()


def test_metadata_change(server: MailhouseProcess) -> None:
    n = raw_client(server, "n5")
    other = raw_client(server, "n5")
    try:
        r = n.cmd("NOTIFY SET (INBOXES (MailboxMetadataChange)) (PERSONAL (ServerMetadataChange))")
        assert tagged(r).startswith(b"OK"), r
        assert tagged(other.cmd('SETMETADATA INBOX (/private/comment "hello")')).startswith(b"OK")
        assert n.line() == b"* METADATA INBOX /private/comment"
        assert tagged(other.cmd('SETMETADATA "" (/private/vendor/x/a "1" /private/b "2")')).startswith(b"OK")
        # one response naming both entries, or one per entry: the two writes may reach the
        # session as one wake-up or as two (pushes are immediate since issue 13 §2)
        got = _lines_until(n, lambda ln: b"/private/b" in ln)
        if not any(b"/private/vendor/x/a" in ln for ln in got):
            got += _lines_until(n, lambda ln: b"/private/vendor/x/a" in ln)
        named = sorted(e for ln in got for e in ln.removeprefix(b'* METADATA "" ').split())
        assert named == [b"/private/b", b"/private/vendor/x/a"], got
        # removal (NIL) is always reported (RFC 5465 §5.6)
        assert tagged(other.cmd("SETMETADATA INBOX (/private/comment NIL)")).startswith(b"OK")
        assert n.line() == b"* METADATA INBOX /private/comment"
        # metadata of a mailbox outside the filter: nothing
        assert tagged(other.cmd('SETMETADATA Archive (/private/comment "x")')).startswith(b"OK")

        # a change written by another process on the same store
        async def set_it(store: Any, acc: int) -> None:
            box = await store.get_mailbox(acc, "INBOX")
            await metadata.set_entry(
                store, acc, metadata.mailbox_scope(box), "/shared/note", b"v", locks=LOCKS
            )

        _in_store(server, "n5", set_it)
        assert n.line() == b"* METADATA INBOX /shared/note"
    finally:
        n.close()
        other.close()


def test_notify_set_checks(server: MailhouseProcess) -> None:
    n = raw_client(server, "n6")
    try:
        r = n.cmd("NOTIFY SET (PERSONAL (AnnotationChange))")
        assert tagged(r).startswith(b"NO [BADEVENT ("), r
        code = r[-1].split(b"[", 1)[1].split(b"]", 1)[0]
        for ev in (b"FlagChange", b"MailboxName", b"SubscriptionChange", b"ServerMetadataChange"):
            assert ev in code, r
        assert b"AnnotationChange" not in code, r
        # RFC 5465 §5: for SELECTED MessageNew and MessageExpunge go together and FlagChange needs
        # both; for other mailboxes any one is valid (issue 13: as Dovecot answers)
        assert tagged(n.cmd("NOTIFY SET (SELECTED (MessageNew))")).startswith(b"BAD")
        assert tagged(n.cmd("NOTIFY SET (SELECTED-DELAYED (FlagChange))")).startswith(b"BAD")
        assert tagged(n.cmd("NOTIFY SET (PERSONAL (MessageNew))")).startswith(b"OK")
        assert tagged(n.cmd("NOTIFY SET (PERSONAL (FlagChange))")).startswith(b"OK")
        # §6.1: only message events for SELECTED, and only one SELECTED filter
        assert tagged(n.cmd("NOTIFY SET (SELECTED (MailboxName))")).startswith(b"BAD")
        r = n.cmd(
            "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))"
        )
        assert tagged(r).startswith(b"BAD"), r
        # §8: a fetch-att list only for SELECTED
        assert tagged(n.cmd("NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))")).startswith(b"BAD")
        r = n.cmd("NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge)) (PERSONAL (MailboxName))")
        assert tagged(r).startswith(b"OK"), r
        assert tagged(n.cmd("NOTIFY NONE")).startswith(b"OK")
    finally:
        n.close()
