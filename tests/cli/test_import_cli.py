"""`mailhouse import maildir|mbox|imap` as real subprocesses (issue 18 §1, §4): the report and
exit status, --dry-run, kill -9 mid-import then resume (no duplicates, both backends), an IMAP
import from a running Mailhouse over verified TLS, and new mail seen by an IDLE session of the
server that runs meanwhile."""

from __future__ import annotations

import asyncio
import concurrent.futures
import mailbox
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from imapclient import IMAPClient

from mailhouse import config as config_mod
from mailhouse.store import open_store
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

pytestmark = pytest.mark.slow
ALICE = "alice@example.org"
T = TypeVar("T")


def make_maildir(root: Path, n: int, size: int = 200) -> None:
    for d in ("cur", "new", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = b"From: x@example.net\nSubject: m%d\n\n" % i + b"y" * size + b"\n"
        (root / "cur" / f"{1_600_000_000 + i}.M{i}P1.host:2,S").write_bytes(body)


def in_store(mh: MailhouseProcess, fn: Callable[[Any], Awaitable[T]]) -> T:
    """FN(store) on MH's store, opened in-process (in a thread: safe under a running loop)."""
    cfg = config_mod.load(str(mh.cfgfile))

    async def run() -> T:
        s = open_store(cfg.store, cfg.data_dir)
        await s.open()
        try:
            return await fn(s)
        finally:
            await s.close()

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, run()).result()


async def mailbox_of(s: Any, user: str = ALICE, folder: str = "INBOX") -> Any:
    acc = await s.get_account(user)
    assert acc is not None
    mb = await s.get_mailbox(acc.id, folder)
    assert mb is not None
    return mb


def stored(mh: MailhouseProcess, user: str = ALICE, folder: str = "INBOX") -> list[tuple[int, str, bytes]]:
    """(uid, delivery key, octets) of FOLDER's messages."""

    async def run(s: Any) -> list[tuple[int, str, bytes]]:
        mb = await mailbox_of(s, user, folder)
        keys = await s.delivery_keys(mb.id)
        return [
            (r.uid, keys.get(r.uid, ""), await s.blobs.get(r.blob_key)) for r in await s.list_messages(mb.id)
        ]

    return in_store(mh, run)


@pytest.fixture
def target(
    mailhouse_factory: Callable[..., MailhouseProcess], request: pytest.FixtureRequest
) -> MailhouseProcess:
    backend = getattr(request, "param", "sqlite")
    url = request.getfixturevalue("postgres_db") if backend == "postgres" else None
    mh = mailhouse_factory(store_url=url)
    mh.add_domain("example.org")
    mh.add_user(ALICE)
    return mh


def test_report_dry_run_and_exit_status(target: MailhouseProcess, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    make_maildir(root, 5)
    (root / "cur" / "1700000000.Mzero.host:2,").write_bytes(b"")
    with open(root / "cur" / "1700000001.Mbig.host:2,", "wb") as big:  # 200 MB, sparse: never read
        big.truncate(200_000_000)
    dry = target.cli("import", "maildir", str(root), ALICE, "--dry-run", check=False)
    assert dry.returncode == 1, dry.stderr
    assert "would import 5 message(s)" in dry.stdout
    assert "1700000000.Mzero.host:2,: empty message (0 octets)" in dry.stdout
    assert "1700000001.Mbig.host:2,: 200000000 octets, over the limit of 52428800" in dry.stdout
    assert stored(target) == []
    real = target.cli("import", "maildir", str(root), ALICE, check=False)
    assert real.returncode == 1 and "imported 5 message(s)" in real.stdout, real.stdout + real.stderr
    assert len(stored(target)) == 5
    (root / "cur" / "1700000000.Mzero.host:2,").unlink()
    (root / "cur" / "1700000001.Mbig.host:2,").unlink()
    again = target.cli("import", "maildir", str(root), ALICE)
    assert "imported 0 message(s)" in again.stdout and "skipped 5 already imported" in again.stdout
    missing = target.cli("import", "mbox", str(tmp_path / "nope.mbox"), ALICE, check=False)
    assert missing.returncode == 2 and "not a file" in missing.stderr


@pytest.mark.parametrize("target", ["sqlite", "postgres"], indirect=True)
def test_kill_9_then_resume_without_duplicates(target: MailhouseProcess, tmp_path: Path) -> None:
    n = 3000
    root = tmp_path / "Maildir"
    make_maildir(root, n, size=2000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailhouse", "import", "maildir", str(root), ALICE, "--no-progress"],
        env=target.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    got = 0

    async def count(s: Any) -> int:
        return len(await s.list_messages((await mailbox_of(s)).id))

    deadline = time.monotonic() + 120
    while got == 0 and proc.poll() is None and time.monotonic() < deadline:
        got = in_store(target, count)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(stored(target))
    assert 0 < first < n, "the kill came too late to show a resume; make the Maildir bigger"
    resumed = target.cli("import", "maildir", str(root), ALICE)
    assert f"skipped {first} already imported" in resumed.stdout, resumed.stdout
    rows = stored(target)
    assert len(rows) == n
    assert len({k for _, k, _ in rows}) == n and len({o for *_, o in rows}) == n


def test_import_imap_from_mailhouse_with_verified_tls(
    mailhouse_factory: Callable[..., MailhouseProcess], target: MailhouseProcess
) -> None:
    src = mailhouse_factory(hostname="old.example.org")
    src.add_domain("example.org")
    src.add_user("bob@example.org")
    src.start()
    ctx = ssl.create_default_context(cafile=str(src.data_dir / "tls" / "cert.pem"))
    with IMAPClient(*src.addr("imaps"), ssl=True, ssl_context=ctx) as c:
        c.login("bob@example.org", PASSWORD)
        c.create_folder("Projects/2026")
        for i in range(4):
            c.append("INBOX", b"Subject: s%d\r\n\r\nbody\r\n" % i, flags=[b"\\Seen", b"work"] if i else [])
        c.append("Projects/2026", b"Subject: p\r\n\r\nplan\r\n", flags=[b"\\Flagged"])
        c.append("Sent", b"Subject: sent\r\n\r\nsent\r\n", flags=[b"\\Seen"])
        want_uv = c.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"]
    host, port = src.addr("imaps")
    url = f"imaps://{urllib.parse.quote('bob@example.org')}@{host}:{port}"
    # TLS is verified by default: Mailhouse's self-signed certificate is refused ...
    refused = target.cli("import", "imap", url, ALICE, "--password-stdin", stdin=PASSWORD + "\n", check=False)
    assert refused.returncode != 0 and "certificate verify failed" in refused.stderr, refused.stderr
    assert stored(target) == []
    # ... and accepted with its CA (--ca)
    ca = str(src.data_dir / "tls" / "cert.pem")
    ok = target.cli("import", "imap", url, ALICE, "--password-stdin", "--ca", ca, stdin=PASSWORD + "\n")
    assert "imported 6 message(s)" in ok.stdout and "failed 0" in ok.stdout, ok.stdout
    assert [u for u, *_ in stored(target)] == [1, 2, 3, 4]
    assert len(stored(target, folder="Projects/2026")) == 1 and len(stored(target, folder="Sent")) == 1

    async def uv(s: Any) -> int:
        return int((await mailbox_of(s)).uidvalidity)

    assert in_store(target, uv) == want_uv
    # imap:// + STARTTLS (RFC 9051 §6.2.1), verified the same way; the same source: nothing new
    host, port = src.addr("imap")
    url = f"imap://{urllib.parse.quote('bob@example.org')}@{host}:{port}"
    tls = target.cli("import", "imap", url, ALICE, "--password-stdin", "--ca", ca, stdin=PASSWORD + "\n")
    assert "imported 0 message(s)" in tls.stdout and "skipped 6 already imported" in tls.stdout, tls.stdout


@pytest.mark.parametrize("target", ["sqlite", "postgres"], indirect=True)
def test_new_mail_shows_up_in_idle_while_serving(target: MailhouseProcess, tmp_path: Path) -> None:
    target.start()
    path = tmp_path / "in.mbox"
    box = mailbox.mbox(path)
    for i in range(3):
        box.add(mailbox.mboxMessage(b"From: x@example.net\nSubject: idle %d\n\nbody\n" % i))
    box.close()
    ctx = ssl.create_default_context(cafile=str(target.data_dir / "tls" / "cert.pem"))
    with IMAPClient(*target.addr("imaps"), ssl=True, ssl_context=ctx, timeout=30) as c:
        c.login(ALICE, PASSWORD)
        c.select_folder("INBOX")
        c.idle()
        r = target.cli("import", "mbox", str(path), ALICE)
        assert "imported 3 message(s)" in r.stdout
        seen: list[Any] = []
        deadline = time.monotonic() + 20
        while (
            not any(x[1] == b"EXISTS" and x[0] == 3 for x in seen if len(x) > 1)
            and time.monotonic() < deadline
        ):
            seen += c.idle_check(timeout=1)
        c.idle_done()
    assert any(x[1] == b"EXISTS" and x[0] == 3 for x in seen if len(x) > 1), seen
