"""Issue 12 item 2: SMTP messages stream to disk; memory does not scale with message size."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.mailhouse_proc import MailhouseProcess
from tests.smtpserver.stream_client import RawSmtp, big_body, smtp_only, vm_status

BIG = 48 * 1000 * 1000
MAX_SIZE = 60 * 1000 * 1000


@pytest.fixture
def big_mh(mailhouse_factory: Callable[..., MailhouseProcess]) -> MailhouseProcess:
    mh = mailhouse_factory(services=("smtp",), extra=f"[limits]\nmax_message_size = {MAX_SIZE}\n")
    mh.add_domain("example.org")
    for u in ("alice", "bob", "carol", "dave"):
        mh.add_user(f"{u}@example.org")
    return mh.start()


def test_rss_bounded_four_parallel_48mb(big_mh: MailhouseProcess) -> None:
    assert big_mh.proc is not None
    pid = big_mh.proc.pid
    # warm the process up with one small message so imports and caches are in place
    c = RawSmtp(big_mh.addr("smtp"))
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    assert c.data([b"Subject: warm\r\n\r\nhello\r\n"])[0] == 250
    c.close()
    before = vm_status(pid)
    results: list[int] = []

    def send(user: str) -> None:
        s = RawSmtp(big_mh.addr("smtp"))
        s.cmd("EHLO client.test")
        s.cmd(f"MAIL FROM:<x@remote.test> SIZE={BIG}")
        s.cmd(f"RCPT TO:<{user}@example.org>")
        code, _ = s.data([b"Subject: big\r\n\r\n", *big_body(BIG)])
        results.append(code)
        s.close()

    threads = [threading.Thread(target=send, args=(u,)) for u in ("alice", "bob", "carol", "dave")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    after = vm_status(pid)
    grown_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(
        f"RSS before {before['VmRSS'] / 1024:.0f} MB, peak after {after['VmHWM'] / 1024:.0f} MB, +{grown_mb:.0f} MB"
    )
    assert results == [250, 250, 250, 250]
    assert grown_mb < 100, f"server peak RSS grew by {grown_mb:.0f} MB for 4 × 48 MB messages"


# ---------------------------------------------------------------- byte-exact delivery


def stuffed(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 dot-stuffing of a CRLF message."""
    out = data.replace(b"\r\n.", b"\r\n..")
    return b"." + out if out.startswith(b".") else out


def pieces(data: bytes, sizes: tuple[int, ...]) -> list[bytes]:
    """DATA split into pieces of the given sizes, cycling (borders fall anywhere, in CRLF too)."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[pos : pos + n])
        pos += n
        i += 1
    return out


def tricky_message(size: int, token: str) -> bytes:
    line = b".dot first\r\n..two dots\r\ntrailing space \r\n\ttab\r\n" + b"y" * 70 + b"\r\n.\r\nx\r\n"
    body = line * max(1, size // len(line))
    return f"Subject: stream {token}\r\nX-Token: {token}\r\n\r\n".encode() + body


def stored(mh: MailhouseProcess, user: str, token: str) -> bytes:
    from tests.helpers import mailbox

    (msg,) = [m for m in mailbox(mh, user) if f"X-Token: {token}".encode() in m]
    return msg


@pytest.fixture
def small_mh(mailhouse_factory: Callable[..., MailhouseProcess]) -> MailhouseProcess:
    return smtp_only(mailhouse_factory, 8_000_000, 6_000_000)


def session(mh: MailhouseProcess) -> RawSmtp:
    s = RawSmtp(mh.addr("smtp"))
    assert s.cmd("EHLO client.test")[0] == 250
    return s


@pytest.mark.parametrize("size", [200, 100_000, 3_000_000])
def test_data_byte_exact_with_dot_stuffing(small_mh: MailhouseProcess, size: int) -> None:
    token = f"d{size}"
    msg = tricky_message(size, token)
    s = session(small_mh)
    s.cmd("MAIL FROM:<x@remote.test>")
    s.cmd("RCPT TO:<alice@example.org>")
    code, text = s.data(pieces(stuffed(msg), (1, 7, 65536, 3, 100_001)))
    assert code == 250, text
    s.close()
    got = stored(small_mh, "alice@example.org", token)
    assert got.startswith(b"Return-Path: <x@remote.test>\r\nReceived: ")
    assert got.endswith(b"\r\n" + msg) and len(got) < len(msg) + 400


@pytest.mark.parametrize("size", [300, 2_500_000])
def test_bdat_byte_exact_with_crlf_split_across_chunks(small_mh: MailhouseProcess, size: int) -> None:
    token = f"b{size}"
    msg = tricky_message(size, token)
    cr = msg.index(b"\r\n", msg.index(b"\r\n\r\n") + 10) + 1  # a chunk border between CR and LF
    chunks = [msg[:cr], *pieces(msg[cr:], (1, 9999, 300_000))]
    s = session(small_mh)
    s.cmd("MAIL FROM:<x@remote.test> BODY=BINARYMIME")
    s.cmd("RCPT TO:<alice@example.org>")
    code, text = s.bdat(chunks)
    assert code == 250, text
    s.close()
    assert stored(small_mh, "alice@example.org", token).endswith(b"\r\n" + msg)


# ---------------------------------------------------------------- the in-flight cap


def test_inflight_cap_452_then_session_goes_on(small_mh: MailhouseProcess) -> None:
    s = session(small_mh)
    # RFC 1870 SIZE: a declared size above what is left of the budget is refused at MAIL FROM
    code, text = s.cmd("MAIL FROM:<x@remote.test> SIZE=7000000")
    assert code == 452 and b"4.3.1" in text, text
    # a second session holds 4 MB in flight (its DATA is open and unfinished)
    other = session(small_mh)
    other.cmd("MAIL FROM:<y@remote.test>")
    other.cmd("RCPT TO:<alice@example.org>")
    assert other.cmd("DATA")[0] == 354
    other.sock.sendall(b"Subject: held\r\n\r\n")
    for p in big_body(4_000_000):
        other.sock.sendall(p)
    spool = small_mh.data_dir / "spool"
    deadline = time.time() + 60
    while time.time() < deadline and sum(f.stat().st_size for f in spool.glob("*")) < 3_900_000:
        time.sleep(0.05)  # until the server has read (and spooled) it
    # this one crosses the 6 MB cap with 3 MB: answered 452 at the end of data, message dropped
    assert s.cmd("MAIL FROM:<x@remote.test>")[0] == 250
    assert s.cmd("RCPT TO:<alice@example.org>")[0] == 250
    code, text = s.data([b"Subject: over\r\nX-Token: over\r\n\r\n", *big_body(3_000_000)])
    assert code == 452 and b"4.3.1" in text, text
    # BDAT crossing it: 452 to the chunk that crosses, the transaction fails
    assert s.cmd("MAIL FROM:<x@remote.test>")[0] == 250
    assert s.cmd("RCPT TO:<alice@example.org>")[0] == 250
    code, text = s.bdat([b"X-Token: over2\r\n\r\n" + b"z" * 2_500_000, b"w" * 10])
    assert code == 452 and b"4.3.1" in text, text
    # the other session finishes: its octets are given back and both may send again
    other.sock.sendall(b".\r\n")
    assert other.reply()[0] == 250
    other.close()
    assert s.cmd("MAIL FROM:<x@remote.test> SIZE=3100000")[0] == 250
    assert s.cmd("RCPT TO:<alice@example.org>")[0] == 250
    code, _ = s.data([b"Subject: retry\r\nX-Token: retry\r\n\r\n", *big_body(3_000_000)])
    assert code == 250
    s.close()
    stored(small_mh, "alice@example.org", "retry")
    from tests.helpers import mailbox

    assert not [m for m in mailbox(small_mh, "alice@example.org") if b"X-Token: over" in m]
    assert not spool.exists() or list(spool.iterdir()) == []  # every spool file removed


def test_header_section_longer_than_head_max_is_552(small_mh: MailhouseProcess) -> None:
    s = session(small_mh)
    s.cmd("MAIL FROM:<x@remote.test>")
    s.cmd("RCPT TO:<alice@example.org>")
    code, text = s.data([b"X-Long: " + b"h" * 70 + b"\r\n" for _ in range(5000)])  # no body, 390 KB
    assert code == 552 and b"5.3.4" in text, text
    assert s.cmd("NOOP")[0] == 250
    s.close()


def test_connection_lost_mid_data_leaves_no_spool_file(small_mh: MailhouseProcess) -> None:
    s = session(small_mh)
    s.cmd("MAIL FROM:<x@remote.test>")
    s.cmd("RCPT TO:<alice@example.org>")
    assert s.cmd("DATA")[0] == 354
    s.sock.sendall(b"Subject: cut\r\n\r\n")
    for p in big_body(2_000_000):
        s.sock.sendall(p)
    spool = small_mh.data_dir / "spool"
    deadline = time.time() + 30
    while time.time() < deadline and not (spool.exists() and list(spool.iterdir())):
        time.sleep(0.05)
    assert list(spool.iterdir()), "the message was not spooled to disk"
    s.sock.close()
    while time.time() < deadline and list(spool.iterdir()):
        time.sleep(0.05)
    assert list(spool.iterdir()) == []
    # and the budget was given back: a message of nearly the whole cap is accepted
    s = session(small_mh)
    assert s.cmd("MAIL FROM:<x@remote.test> SIZE=5900000")[0] == 250
    s.close()
