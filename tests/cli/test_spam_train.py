"""`mailhouse spam train --spam|--ham USER PATH` from a Maildir and an mbox file (issue 14 §3)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.accounts.admin import Admin
from mailhouse.cli.spam_train import mbox_messages
from mailhouse.spam.tokens import MAX_BYTES, token_hash
from tests.mailhouse_proc import MailhouseProcess
from tests.spam.corpus import corpus

USER = "trainee@example.org"


def _counts(mh: MailhouseProcess, word: str) -> tuple[tuple[int, int], dict[int, tuple[int, int]]]:
    async def read(a: Admin) -> tuple[tuple[int, int], dict[int, tuple[int, int]]]:
        acc = await a.store.get_account(USER)
        assert acc is not None
        return await a.store.spam_totals(acc.id), await a.store.spam_token_counts(acc.id, [token_hash(word)])

    result: tuple[tuple[int, int], dict[int, tuple[int, int]]] = mh.admin(read)
    return result


def test_train_from_maildir_and_mbox(tmp_path: Path) -> None:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh")
    mh.data_dir.mkdir()
    mh.add_domain("example.org")
    mh.add_user(USER)
    spam, ham = corpus(seed=7, count=120)
    md = tmp_path / "Junk"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    for i, m in enumerate(spam):
        (md / ("cur" if i % 2 else "new") / f"{i}.host:2,S").write_bytes(m)
    (md / "tmp" / "partial").write_bytes(b"Subject: half-written\r\n\r\nnot a message yet")
    mbox = tmp_path / "ham.mbox"
    with mbox.open("wb") as f:
        for m in ham:
            f.write(b"From colleague@example.org Mon Dec  7 10:00:00 2026\n")
            f.write(m.replace(b"\r\n", b"\n") + b">From the archives: zyzzyva\n\n")

    r = mh.cli("spam", "train", "--spam", USER, str(md))
    assert f"{USER}: 120 of 120 messages trained as spam" in r.stdout, r.stdout
    assert "100 messages read" in r.stderr  # progress
    r = mh.cli("spam", "train", "--ham", USER, str(mbox))
    assert "120 of 120 messages trained as ham" in r.stdout and "totals 120 spam, 120 ham" in r.stdout
    # ">From" quoting undone: the word after it is a token of every ham message, and only ham
    assert _counts(mh, "zyzzyva") == ((120, 120), {token_hash("zyzzyva"): (0, 120)})
    # the same Maildir again: nothing new; as ham: moved over (spam training taken back)
    r = mh.cli("spam", "train", "--spam", USER, str(md))
    assert "0 of 120 messages trained as spam (120 already)" in r.stdout
    r = mh.cli("spam", "train", "--ham", USER, str(md))
    assert "totals 0 spam, 240 ham" in r.stdout


def test_train_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh")
    mh.data_dir.mkdir()
    mh.add_domain("example.org")
    mh.add_user(USER)
    (tmp_path / "plain").mkdir()
    r = mh.cli("spam", "train", "--spam", USER, str(tmp_path / "plain"), check=False)
    assert r.returncode == 1 and "not a Maildir" in r.stderr
    r = mh.cli("spam", "train", "--spam", "nobody@example.org", str(tmp_path / "plain"), check=False)
    assert r.returncode == 1
    r = mh.cli("spam", "train", USER, str(tmp_path / "plain"), check=False)
    assert r.returncode == 2  # --spam or --ham is required


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_mbox_splitter_takes_any_octets(parts: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.mbox"
        data = b"From a@b Mon Dec  7 10:00:00 2026\n".join([b""] + parts)
        p.write_bytes(data)
        msgs = list(mbox_messages(p))
        separators = sum(1 for line in data.split(b"\n") if line.startswith(b"From "))
        assert len(msgs) == separators and all(len(m) <= MAX_BYTES for m in msgs)
