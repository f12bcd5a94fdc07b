"""Issue 12 item 4 over real sockets: SEARCH is bounded in memory and time.

A real ``mailhouse serve`` (one worker) whose store is filled before it starts, so its memory
holds nothing of the messages until the SEARCH reads them; RSS is sampled from
``/proc/<pid>/status`` while the command runs. The code before this change decoded and
case-folded every message whole, on the event loop, holding a chunk of them at once (figures
at ``RSS_BOUND_KIB``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imapserver.server_helpers import RawIMAP, tagged
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

BIG = 40_000_000  # octets per message, as in issue 12 item 4
# Bound on the RSS growth during one SEARCH TEXT over the big messages: one message's octets
# (the loader reads one blob whole) plus its MIME tree and a few windows, with allocator slack.
# Measured with the code before this change (same test): +778 MiB for the big messages (9 s,
# a second client's NOOP waited 7.4 s) and +358 MiB for the MIME bombs (45 s); after: +40 MiB
# and +4 MiB, NOOP under 0.06 s.
RSS_BOUND_KIB = 110 * 1024
NOOP_BOUND = 1.0  # seconds; generous (2 cores shared by many test runs)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RssSampler:
    """Peak VmRSS of a process while a block runs (sampled every 5 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = _rss_kib(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_kib(self.pid))
            time.sleep(0.005)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_kib(self.pid))

    @property
    def grown(self) -> int:
        return self.peak - self.before


def _head(ctype: str, cte: str, subject: str) -> bytes:
    return (
        f"From: Sender <sender@remote.test>\r\nTo: big@example.org\r\nSubject: {subject}\r\n"
        f"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\nMessage-ID: <{subject}@remote.test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode()


def _fill(unit: bytes, size: int) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


def big_messages() -> list[bytes]:
    """Four 40 MB messages: 8bit UTF-8, base64, quoted-printable Latin-1, and UTF-8 text whose
    case folding triples it (U+0390 folds to three code points, U+1F600 makes it UCS-4)."""
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    plain = _head("text/plain; charset=utf-8", "8bit", "plain") + _fill(line, BIG)
    b64 = _head("text/plain; charset=utf-8", "base64", "b64") + base64.encodebytes(
        _fill(line, BIG * 3 // 4 - 100)
    ).replace(b"\n", b"\r\n")
    qp = _head("text/plain; charset=iso-8859-1", "quoted-printable", "qp") + binascii.b2a_qp(
        _fill("Café crème brûlée à la française. ".encode("latin-1"), BIG // 2)
    ).replace(b"\n", b"\r\n")
    grow = _head("text/plain; charset=utf-8", "8bit", "grow") + _fill(("ΐ" * 30 + "😀\r\n").encode(), BIG)
    return [plain, b64, qp, grow]


def bomb_messages() -> list[bytes]:
    """MIME bombs any outside sender can deliver: thousands of base64 text parts whose text is
    itself base64, and 90 levels of multipart nesting around folding-expanding text."""
    out = []
    text = base64.encodebytes(_fill(("ΐ" * 40 + "😀\r\n").encode(), 6000)).replace(b"\n", b"\r\n")
    part = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    part += base64.encodebytes(text).replace(b"\n", b"\r\n")
    for n in range(2):
        body = b"".join(b"--bb\r\n" + part + b"\r\n" for _ in range(BIG // len(part) // 2)) + b"--bb--\r\n"
        out.append(_head('multipart/mixed; boundary="bb"', "7bit", f"bomb{n}") + body)
    inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + _fill(
        ("ΐ" * 30 + "😀\r\n").encode(), BIG // 2
    )
    for i in range(90):
        inner = f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n'.encode() + inner
        inner += f"\r\n--n{i}--\r\n".encode()
    out.append(b"From: x@remote.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n" + inner)
    return out


async def _provision(mh: MailhouseProcess, boxes: dict[str, list[bytes]]) -> None:
    from mailhouse.accounts.admin import Admin
    from mailhouse.accounts.passwords import make_credentials
    from mailhouse.store import open_store
    from mailhouse.store.api import NewMessage

    mh.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
    await store.open()
    try:
        await Admin(store).add_domain("example.org")
        pw_hash, scram = make_credentials(PASSWORD)
        for user, msgs in boxes.items():
            acc = await store.add_account(f"{user}@example.org", pw_hash, scram=scram)
            mb = await store.get_mailbox(acc.id, "INBOX")
            assert mb is not None
            for raw in msgs:
                await store.deliver(raw, [NewMessage(mb.id, "", len(raw), internaldate=time.time())])
    finally:
        await store.close()


def window_messages() -> list[bytes]:
    """Correctness over the wire: matches at 64 KiB window borders (the messages are big enough
    to be matched on the search pool, not inline)."""
    from mailhouse.message.search import WINDOW

    def msg(subject: str, ctype: str, cte: str, body: bytes) -> bytes:
        return _head(ctype, cte, subject) + body

    pad = WINDOW - 5
    return [
        msg(
            "border", "text/plain; charset=utf-8", "8bit", b"x" * pad + b"BorderWord here\r\n" + b"y" * WINDOW
        ),
        msg(
            "qp",
            "text/plain; charset=utf-8",
            "quoted-printable",
            (b"z" * 75 + b"=\r\n") * (WINDOW // 78) + b"Gro=\r\n=C3=9Fe Stra=C3=9Fe\r\n" + b"w" * WINDOW,
        ),
        msg(
            "b64",
            "text/plain; charset=utf-8",
            "base64",
            base64.encodebytes(("ä" * (WINDOW // 2 - 3) + "Geheimwort").encode() + b"v" * WINDOW).replace(
                b"\n", b"\r\n"
            ),
        ),
        msg(
            "latin",
            "text/plain; charset=iso-8859-1",
            "8bit",
            b"u" * (WINDOW - 3) + "Fußgängerübergänge".encode("latin-1") + b"t" * WINDOW,
        ),
        msg(
            "sjis",
            "text/plain; charset=shift_jis",
            "8bit",
            b"s" * (WINDOW - 7) + "検索できる日本語".encode("shift_jis") + b"r" * WINDOW,
        ),
    ]


@pytest.fixture(scope="module")
def search_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("search")
    mh = MailhouseProcess(root)  # writes the config; the store is filled before any server starts
    asyncio.run(_provision(mh, {"big": big_messages(), "bomb": bomb_messages(), "win": window_messages()}))
    return root


def _server(root: Path, extra: str = "") -> MailhouseProcess:
    return MailhouseProcess(root, services=("imap", "imaps"), extra=extra).start()


@pytest.fixture(scope="module")
def search_server(search_root: Path) -> Iterator[MailhouseProcess]:
    mh = _server(search_root, "[limits]\nsearch_time_budget = 600.0\n")
    try:
        yield mh
    finally:
        mh.stop()


def _client(mh: MailhouseProcess, user: str) -> RawIMAP:
    c = RawIMAP(mh.addr("imaps"), timeout=600)
    c.login(user)
    assert tagged(c.cmd("SELECT INBOX")).startswith(b"OK")
    return c


def _search_rss(mh: MailhouseProcess, user: str, command: str) -> tuple[int, list[bytes], float]:
    c = _client(mh, user)
    try:
        assert mh.proc is not None
        t0 = time.monotonic()
        with RssSampler(mh.proc.pid) as rss:
            r = c.cmd(command)
        return rss.grown, r, time.monotonic() - t0
    finally:
        c.close()


def test_search_text_over_four_40mb_messages_bounded_rss(search_server: MailhouseProcess) -> None:
    grown, r, took = _search_rss(search_server, "big", 'SEARCH TEXT "needle-that-is-nowhere"')
    assert tagged(r).startswith(b"OK"), r
    assert r[0] == b"* SEARCH", r
    assert grown < RSS_BOUND_KIB, f"RSS grew by {grown // 1024} MiB during SEARCH TEXT ({took:.1f} s)"
    # and it finds what is there, in every encoding (the last octets of each message)
    c = _client(search_server, "big")
    try:
        assert c.cmd('SEARCH BODY "lazy DOG, AGAIN"')[0] == b"* SEARCH 1 2", "8bit and base64"
        assert c.cmd('SEARCH BODY "CRÈME BRÛLÉE"')[0] == b"* SEARCH 3"
        assert c.cmd('SEARCH CHARSET UTF-8 BODY "ΐΐ😀"')[0] == b"* SEARCH 4"
    finally:
        c.close()


def test_search_text_over_mime_bombs_bounded_rss(search_server: MailhouseProcess) -> None:
    grown, r, took = _search_rss(search_server, "bomb", 'SEARCH TEXT "needle-that-is-nowhere"')
    assert tagged(r).startswith(b"OK"), r
    assert grown < RSS_BOUND_KIB, f"RSS grew by {grown // 1024} MiB during SEARCH TEXT ({took:.1f} s)"


def test_noop_latency_of_a_second_client_during_a_heavy_search(search_server: MailhouseProcess) -> None:
    heavy = _client(search_server, "big")
    other = _client(search_server, "win")
    try:
        heavy.send(b'H1 SEARCH TEXT "another-needle-nowhere"\r\n')
        done: list[list[bytes]] = []
        t = threading.Thread(target=lambda: done.append(heavy.until_tagged(b"H1")), daemon=True)
        t0 = time.monotonic()
        t.start()
        worst, n = 0.0, 0
        while t.is_alive() or n < 3:
            s = time.monotonic()
            assert tagged(other.cmd("NOOP")).startswith(b"OK")
            worst = max(worst, time.monotonic() - s)
            n += 1
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert done and tagged(done[0]).startswith(b"OK"), done
        assert worst < NOOP_BOUND, f"NOOP took {worst:.2f} s while the SEARCH ran ({took:.1f} s, {n} NOOPs)"
    finally:
        heavy.close()
        other.close()


@pytest.mark.parametrize(
    ("criteria", "want"),
    [
        ('TEXT "borderword HERE"', b"* SEARCH 1"),
        ('BODY "GROSSE STRASSE"', b"* SEARCH 2"),
        ('CHARSET UTF-8 BODY "große straße"', b"* SEARCH 2"),
        ('BODY "ÄÄgeheimwort"', b"* SEARCH 3"),
        ('CHARSET UTF-8 BODY "FUSSGÄNGERÜBERGÄNGE"', b"* SEARCH 4"),
        ('CHARSET UTF-8 BODY "日本語"', b"* SEARCH 5"),
        ('OR BODY "geheimwort" BODY "borderword"', b"* SEARCH 1 3"),
        ('NOT BODY "nowhere-at-all"', b"* SEARCH 1 2 3 4 5"),
    ],
)
def test_matches_at_window_borders_over_the_wire(
    search_server: MailhouseProcess, criteria: str, want: bytes
) -> None:
    c = _client(search_server, "win")
    try:
        r = c.cmd(("SEARCH " + criteria).encode())
        assert tagged(r).startswith(b"OK"), r
        assert r[0] == want, r
        r = c.cmd(("SORT (SUBJECT) UTF-8 " + criteria.removeprefix("CHARSET UTF-8 ")).encode())
        assert tagged(r).startswith(b"OK") and r[0].startswith(b"* SORT"), r
    finally:
        c.close()


@pytest.fixture(scope="module")
def tight_server(search_root: Path) -> Iterator[MailhouseProcess]:
    mh = _server(search_root, "[limits]\nsearch_time_budget = 0.2\n")
    try:
        yield mh
    finally:
        mh.stop()


@pytest.mark.parametrize(
    "command",
    [
        'SEARCH TEXT "needle-that-is-nowhere"',
        'UID SEARCH BODY "needle-that-is-nowhere"',
        'SORT (SUBJECT) UTF-8 TEXT "needle-that-is-nowhere"',
        'THREAD REFERENCES UTF-8 BODY "needle-that-is-nowhere"',
        'ESEARCH IN (PERSONAL) RETURN (COUNT) TEXT "needle-that-is-nowhere"',
    ],
)
def test_time_budget_answers_no_limit(tight_server: MailhouseProcess, command: str) -> None:
    c = _client(tight_server, "big")
    try:
        t0 = time.monotonic()
        r = c.cmd(command)
        took = time.monotonic() - t0
        assert tagged(r) == b"NO [LIMIT] Search took too long", r  # RFC 5530 §3
        assert took < 30, took
        assert tagged(c.cmd("NOOP")).startswith(b"OK")  # the session goes on
        assert c.cmd("SEARCH LARGER 1000")[0] == b"* SEARCH 1 2 3 4"  # cheap keys need no budget
    finally:
        c.close()
