"""Import from a real Dovecot (Debian's, started on loopback by tests/peers): Maildirs filled
over IMAP (APPEND with flags, keywords, dates; folders; an EXPUNGE for a UID gap) and LMTP, then
`import maildir` from its mail_location and `import imap` from the running server; each compared
with what Dovecot itself reports over IMAP: folders, flags, keywords, INTERNALDATE, UIDs and
UIDVALIDITY. Also: a source server that drops the connection (a loopback proxy that cuts it)."""

from __future__ import annotations

import shutil
import smtplib
import socket
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from mailhouse.store.store import MailStore
from mailhouse.transfer.imapsource import ImapSource, parse_url, tls_context
from mailhouse.transfer.importer import Importer
from mailhouse.transfer.maildir import MaildirSource
from tests.transfer.conftest import ALICE

pytestmark = pytest.mark.slow

USER, PW = "carol@example.test", "pw"
MAX = 1 << 20
Snapshot = dict[str, tuple[int, dict[int, tuple[frozenset[str], float, bytes]]]]


def msg(i: int, size: int = 0) -> bytes:
    return b"From: x@example.net\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (i, i) + b"z" * size


@pytest.fixture(params=["maildir++"])
def dovecot(dovecot_factory: Callable[..., Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Dovecot with LMTP; ``indirect`` param "fs": Dovecot's LAYOUT=fs (folders a/b, INBOX at the root)."""
    conf = "protocols = imap pop3 lmtp\n"
    mail = Path(tempfile.mkdtemp(prefix="mh-import-dovecot-"))  # not under tmp_path: mode 0700
    mail.chmod(0o755)
    if request.param == "fs":
        conf += f"mail_location = maildir:{mail}/%d/%n:LAYOUT=fs\n"
    try:
        yield dovecot_factory(users={USER: PW}, extra_conf=conf, mail_dir=mail)
    finally:
        shutil.rmtree(mail, ignore_errors=True)


def fill(d: Any) -> None:
    with IMAPClient(d.host, d.imap_port, ssl=False) as c:
        c.login(USER, PW)
        c.create_folder("Sent")
        sep = c.list_folders()[0][1].decode()  # Maildir++: "."; LAYOUT=fs: "/"
        c.create_folder(f"Lists{sep}python")
        c.create_folder("Brouillons d'\u00e9t\u00e9")
        when = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
        for i in range(6):
            c.append("INBOX", msg(i), flags=[b"\\Seen", b"$Important"] if i % 2 else [], msg_time=when)
        c.append("INBOX", msg(99), flags=[b"\\Flagged", b"project-x", b"\\Answered"], msg_time=when)
        c.append("Sent", msg(100), flags=[b"\\Seen"], msg_time=when)
        c.append(f"Lists{sep}python", msg(101), flags=[b"$Forwarded", b"\\Draft"], msg_time=when)
        c.append("Brouillons d'\u00e9t\u00e9", msg(102), flags=[], msg_time=when)
        c.select_folder("INBOX")
        c.delete_messages([2, 3])  # a UID gap: UIDs 2 and 3 are gone
        c.expunge()
    # RFC 2033 LMTP into Dovecot's LMTP socket: delivered mail, not APPENDed
    with smtplib.LMTP(str(d.run_dir / "lmtp")) as lmtp:
        lmtp.sendmail("x@example.net", [USER], msg(200))


def dovecot_view(d: Any) -> Snapshot:
    """{mailhouse folder name: (UIDVALIDITY, {uid: (flags, internaldate, octets)})} per Dovecot."""
    out: Snapshot = {}
    with IMAPClient(d.host, d.imap_port, ssl=False) as c:
        c.login(USER, PW)
        c.normalise_times = False
        for flags, delim, name in c.list_folders():
            if {b"\\Noselect", b"\\NonExistent"} & set(flags):
                continue
            info = c.select_folder(name, readonly=True)
            got = (
                c.fetch(c.search("ALL"), ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"]) if info[b"EXISTS"] else {}
            )
            target = name.replace(delim.decode(), "/")
            out[target] = (
                int(info[b"UIDVALIDITY"]),
                {
                    uid: (
                        frozenset(f.decode() for f in v[b"FLAGS"]) - {"\\Recent"},
                        v[b"INTERNALDATE"].timestamp(),
                        v[b"BODY[]"],
                    )
                    for uid, v in got.items()
                },
            )
    return out


async def mailhouse_view(store: MailStore, user: str = ALICE) -> Snapshot:
    acc = await store.get_account(user)
    assert acc is not None
    out: Snapshot = {}
    for mb in await store.list_mailboxes(acc.id):
        recs = await store.list_messages(mb.id)
        if recs or mb.name == "INBOX":
            out[mb.name] = (
                mb.uidvalidity,
                {r.uid: (r.flags, r.internaldate, await store.blobs.get(r.blob_key)) for r in recs},
            )
    return out


def expected(view: Snapshot) -> Snapshot:
    return {k: v for k, v in view.items() if v[1] or k == "INBOX"}


@pytest.mark.parametrize("dovecot", ["maildir++", "fs"], indirect=True)
async def test_import_maildir_from_dovecot(store: MailStore, dovecot: Any) -> None:
    fill(dovecot)
    want = expected(dovecot_view(dovecot))
    assert set(want) == {"INBOX", "Sent", "Lists/python", "Brouillons d'\u00e9t\u00e9"}
    assert sorted(want["INBOX"][1]) == [1, 4, 5, 6, 7, 8]  # APPENDs, the gap, then the LMTP one
    root = Path(dovecot.maildir(USER))
    report = await Importer(store, MaildirSource(root), ALICE, max_size=MAX).run()
    assert report.failed == [] and report.imported == 9
    got = await mailhouse_view(store)
    assert got == want, _diff(got, want)
    again = await Importer(store, MaildirSource(root), ALICE, max_size=MAX).run()
    assert (again.imported, again.skipped) == (0, 9)


def imap_source(d: Any, port: int | None = None, retries: int = 5) -> ImapSource:
    url = parse_url(f"imap://{urllib.parse.quote(USER)}@{d.host}:{port or d.imap_port}")
    return ImapSource(url, PW, tls_context(), plaintext_ok=True, retries=retries, sleep=lambda s: None)


async def test_import_imap_from_dovecot(store: MailStore, dovecot: Any) -> None:
    fill(dovecot)
    want = expected(dovecot_view(dovecot))
    report = await Importer(store, imap_source(dovecot), ALICE, max_size=MAX).run()
    assert report.failed == [] and report.imported == 9
    assert await mailhouse_view(store) == want
    again = await Importer(store, imap_source(dovecot), ALICE, max_size=MAX).run()
    assert (again.imported, again.skipped) == (0, 9)


async def test_imap_without_starttls_is_refused_unless_insecure(store: MailStore, dovecot: Any) -> None:
    from mailhouse.transfer.importer import SourceError

    url = parse_url(f"imap://{urllib.parse.quote(USER)}@{dovecot.host}:{dovecot.imap_port}")
    with pytest.raises(SourceError, match="offers no STARTTLS"):
        await Importer(store, ImapSource(url, PW, tls_context()), ALICE, max_size=MAX).run()


class CuttingProxy:
    """A loopback TCP proxy to Dovecot that cuts each of the first CUTS connections after
    LIMIT octets from the server (a source that drops the connection mid-import)."""

    def __init__(self, target: tuple[str, int], limit: int, cuts: int) -> None:
        self.target, self.limit, self.cuts = target, limit, cuts
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            cut = self.connections <= self.cuts
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(server, client, self.limit if cut else None), daemon=True
            ).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(4096):
                if limit is not None and sent + len(data) > limit:
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()


async def test_source_drops_the_connection(store: MailStore, dovecot: Any) -> None:
    with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False) as c:
        c.login(USER, PW)
        for i in range(40):
            c.append("INBOX", msg(i, 3000))
    proxy = CuttingProxy((dovecot.host, dovecot.imap_port), limit=40_000, cuts=3)
    try:
        src = imap_source(dovecot, proxy.port)
        report = await Importer(store, src, ALICE, max_size=MAX).run()
    finally:
        proxy.close()
    assert report.failed == [] and report.imported == 40
    assert src.reconnects >= 3
    got = await mailhouse_view(store)
    assert sorted(got["INBOX"][1]) == list(range(1, 41))


async def test_a_connection_that_keeps_dropping(store: MailStore, dovecot: Any) -> None:
    """Every connection is cut after 20 kB: the small messages still come (one per round trip
    once a batch failed), the big ones fail with a reason, and the next run (a good connection)
    brings only those."""
    with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False) as c:
        c.login(USER, PW)
        for i in range(30):
            c.append("INBOX", msg(i, 3000 if i not in (7, 21) else 50_000))
    proxy = CuttingProxy((dovecot.host, dovecot.imap_port), limit=20_000, cuts=1_000_000)
    try:
        report = await Importer(store, imap_source(dovecot, proxy.port, retries=1), ALICE, max_size=MAX).run()
    finally:
        proxy.close()
    assert report.imported == 28
    assert [w for w, _ in report.failed] == ["INBOX UID 8", "INBOX UID 22"]
    assert all("connection to 127.0.0.1 lost (1 retries)" in r for _, r in report.failed)
    again = await Importer(store, imap_source(dovecot), ALICE, max_size=MAX).run()
    assert (again.imported, again.skipped, again.failed) == (2, 28, [])
    got = await mailhouse_view(store)
    # the source's UIDs where UIDNEXT allowed them; the two late ones get the next UIDs (never lower)
    assert sorted(got["INBOX"][1]) == [u for u in range(1, 31) if u not in (8, 22)] + [31, 32]


def _diff(a: Snapshot, b: Snapshot) -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            va, vb = a.get(k, (0, {})), b.get(k, (0, {}))
            out.append(f"{k}: uv {va[0]} vs {vb[0]}")
            for u in sorted(set(va[1]) | set(vb[1])):
                if va[1].get(u) != vb[1].get(u):
                    out.append(f"  {u}: {va[1].get(u)} != {vb[1].get(u)}")
    return out
