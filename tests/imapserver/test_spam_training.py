"""Issue 14 §3: a real IMAP client moving a message into \\Junk trains it as spam for the account's
Bayes classifier, moving it out (not to \\Trash) trains it as ham and takes the spam training back."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest

from mailhouse.accounts.admin import Admin
from mailhouse.spam.tokens import token_hash
from tests.imapserver.server_helpers import deliver, login, start_server, wait_exists
from tests.mailhouse_proc import MailhouseProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    mh = start_server(tmp_path_factory.mktemp("spamtrain"), users=("junk1", "junk2"))
    try:
        yield mh
    finally:
        mh.stop()


def _state(mh: MailhouseProcess, user: str, word: str) -> tuple[tuple[int, int], dict[int, tuple[int, int]]]:
    async def read(a: Admin) -> tuple[tuple[int, int], dict[int, tuple[int, int]]]:
        acc = await a.store.get_account(f"{user}@example.org")
        assert acc is not None
        return await a.store.spam_totals(acc.id), await a.store.spam_token_counts(acc.id, [token_hash(word)])

    result: tuple[tuple[int, int], dict[int, tuple[int, int]]] = mh.admin(read)
    return result


def _ok(r: tuple[str, list[object]]) -> None:
    assert r[0] == "OK", r


def test_move_into_junk_trains_spam_and_out_trains_ham(server: MailhouseProcess) -> None:
    deliver(server, "junk1", subject="zorkmid offer", body="buy zorkmid tokens today\r\n")
    deliver(server, "junk1", subject="lunch", body="see you at lunch\r\n")
    c: imaplib.IMAP4 = login(server, "junk1")
    try:
        wait_exists(c, "INBOX", 2)
        _ok(c.select("INBOX"))
        _ok(c.uid("MOVE", "1", "Junk"))
        assert _state(server, "junk1", "zorkmid") == ((1, 0), {token_hash("zorkmid"): (1, 0)})
        _ok(c.select("Junk"))
        _ok(c.uid("MOVE", "1", "INBOX"))  # "not spam"
        assert _state(server, "junk1", "zorkmid") == ((0, 1), {token_hash("zorkmid"): (0, 1)})
        _ok(c.select("INBOX"))
        _ok(c.uid("COPY", "2", "Junk"))  # COPY into Junk trains too
        assert _state(server, "junk1", "lunch")[0] == (1, 1)
        _ok(c.select("Junk"))
        _ok(c.uid("MOVE", "1:*", "Trash"))  # deleting spam teaches nothing
        assert _state(server, "junk1", "lunch")[0] == (1, 1)
    finally:
        c.logout()


def test_moves_between_ordinary_mailboxes_train_nothing(server: MailhouseProcess) -> None:
    deliver(server, "junk2", subject="plain", body="nothing special\r\n")
    c = login(server, "junk2")
    try:
        wait_exists(c, "INBOX", 1)
        _ok(c.select("INBOX"))
        _ok(c.uid("MOVE", "1", "Archive"))
        assert _state(server, "junk2", "plain")[0] == (0, 0)
    finally:
        c.logout()
