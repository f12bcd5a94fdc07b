"""RFC 5032 WITHIN (OLDER/YOUNGER) and RFC 8514 SAVEDATE against a running server, with
imaplib: INTERNALDATE (given by APPEND) and the save date (when the message landed in this
mailbox) are different clocks, and each search key reads its own."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

import pytest

from tests.imapserver.server_helpers import login, start_server
from tests.mailhouse_proc import MailhouseProcess

MSG = b"From: a@example.org\r\nSubject: %s\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("within"), users=("wd1",))
    try:
        yield mh
    finally:
        mh.stop()


def test_within_and_savedate(server: MailhouseProcess) -> None:
    c = login(server, "wd1")
    try:
        caps = c.capability()[1][0].split()
        assert b"WITHIN" in caps and b"SAVEDATE" in caps
        assert c.append("INBOX", None, '"01-Jan-2020 10:00:00 +0000"', MSG % b"old")[0] == "OK"
        assert c.append("INBOX", None, None, MSG % b"new")[0] == "OK"
        c.select("INBOX")
        assert c.search(None, "OLDER", "86400")[1] == [b"1"]  # INTERNALDATE more than a day ago
        assert c.search(None, "YOUNGER", "86400")[1] == [b"2"]
        typ, data = c.fetch("1", "(INTERNALDATE SAVEDATE)")
        assert typ == "OK", data
        line = data[0].decode()
        assert 'INTERNALDATE " 1-Jan-2020 10:00:00 +0000"' in line, line  # date-day-fixed (RFC 9051 §9)
        m = re.search(r'SAVEDATE "([ \d]\d-\w{3}-\d{4}) \d\d:\d\d:\d\d [+-]\d{4}"', line)
        assert m, line
        saved = datetime.datetime.strptime(m.group(1).strip(), "%d-%b-%Y").date()
        assert abs((saved - datetime.datetime.now(datetime.UTC).date()).days) <= 1, (
            line
        )  # saved now, not 2020
        # SAVEDSINCE reads the save date: both were saved today, though one is dated 2020
        assert c.search(None, "SAVEDSINCE", "1-Jan-2021")[1] == [b"1 2"]
        assert c.search(None, "SINCE", "1-Jan-2021")[1] == [b"2"]
    finally:
        c.logout()
