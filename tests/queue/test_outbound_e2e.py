"""End to end: real `mailhouse serve` processes on port 25 of their own loopback addresses,
real DNS (dnsmasq), Postfix as interop partner, and a scriptable SMTP peer for the
per-recipient failure cases. No component of Mailhouse is mocked.

  a.test   → mx.a.test  127.0.0.2  Mailhouse A (alice)          submission + smtp
  b.test   → mx.b.test  127.0.0.3  Mailhouse B (bob)            smtp
  c.test   → mx.c.test  127.0.0.4  FakeSMTP: ok*/perm*/temp* local parts
  d.test   → mx.d.test  127.0.0.5  nothing at first ("destination down"), FakeSMTP later
  null.test               null MX (RFC 7505)
  pf.test  → mx.pf.test 127.0.0.6  Postfix (local delivery to maildirs)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import fcntl
import secrets
import smtplib
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailhouse.store import open_store
from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.smtpclient.fake_server import FakeSMTP, default_rcpt_reply

pytestmark = pytest.mark.slow


def wait_until(fn: Callable[[], Any], timeout: float = 45.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def inbox(mh: MailhouseProcess, address: str) -> list[bytes]:
    async def run() -> list[bytes]:
        store = open_store(f"sqlite:///{mh.data_dir / 'mailhouse.db'}", mh.data_dir)
        await store.open()
        try:
            acc = await store.get_account(address)
            assert acc is not None
            mb = await store.get_mailbox(acc.id, "INBOX")
            if mb is None:
                return []
            return [await store.blobs.get(m.blob_key) for m in await store.list_messages(mb.id)]
        finally:
            await store.close()

    return asyncio.run(run())


def find(mh: MailhouseProcess, address: str, token: str) -> list[bytes]:
    return [m for m in inbox(mh, address) if token.encode() in m]


def message(token: str, to: str, sender: str = "alice@a.test") -> str:
    return f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: test {token}\r\n\r\nHello, token {token}.\r\n"


def submit(mh: MailhouseProcess, rcpts: list[str], body: str, rcpt_options: tuple[str, ...] = ()) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(*mh.addr("submission"), timeout=10) as s:
        s.starttls(context=ctx)
        s.login("alice@a.test", PASSWORD)
        s.sendmail("alice@a.test", rcpts, body, rcpt_options=list(rcpt_options))


def swaks_submit(mh: MailhouseProcess, rcpt: str, body: str) -> None:
    """Submit as a mail client would: Debian's swaks, STARTTLS then AUTH PLAIN on 587."""
    host, port = mh.addr("submission")
    r = subprocess.run(
        [
            "swaks",
            "--server",
            host,
            "--port",
            str(port),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@a.test",
            "--auth-password",
            PASSWORD,
            "--from",
            "alice@a.test",
            "--to",
            rcpt,
            "--data",
            body.replace("\r\n", "\n"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def dsn_fields(raw: bytes) -> list[Any]:
    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert m.get_content_type() == "multipart/report"
    return list(m.iter_parts())[1].get_payload()  # type: ignore[no-any-return]


def queue_list(mh: MailhouseProcess) -> str:
    return mh.cli("queue", "list").stdout


class Lab:
    def __init__(self, a: MailhouseProcess, b: MailhouseProcess, c: FakeSMTP, dns: Any, postfix: Any) -> None:
        self.a, self.b, self.c, self.dns, self.postfix = a, b, c, dns, postfix
        self.temp_ok = False


def mh_extra(dns: Any, **queue: float) -> str:
    q = {"outbound_port": 25, "retry_base": 1, "retry_max": 2, **queue}
    # the lab's servers bind port 25 and the suite runs as root: keep root (runtime/privileges.py)
    return f'allow_root = true\n[dns]\nnameservers = ["{dns.nameserver}"]\n[queue]\n' + "".join(
        f"{k} = {v}\n" for k, v in q.items()
    )


@pytest.fixture(scope="module")
def port25_lock() -> Iterator[None]:
    """Port 25 on 127.0.0.2-8 is a shared resource: serialise concurrent runs of this module."""
    with open("/tmp/mailhouse-outbound-e2e.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def lab(
    port25_lock: None, tmp_path_factory: pytest.TempPathFactory, dns_server_factory: Any, postfix_factory: Any
) -> Iterator[Lab]:
    dns = dns_server_factory(
        mx={
            "a.test": [(10, "mx.a.test")],
            "b.test": [(10, "mx.b.test")],
            "c.test": [(10, "mx.c.test")],
            "d.test": [(10, "mx.d.test")],
            "null.test": [(0, ".")],
            "pf.test": [(10, "mx.pf.test")],
            "down.test": [(10, "mx.down.test")],
        },
        a={
            "mx.a.test": "127.0.0.2",
            "mx.b.test": "127.0.0.3",
            "mx.c.test": "127.0.0.4",
            "mx.d.test": "127.0.0.5",
            "mx.pf.test": "127.0.0.6",
            "mx.down.test": "127.0.0.8",
        },
    )
    root = tmp_path_factory.mktemp("outbound")
    (root / "a").mkdir()
    (root / "b").mkdir()
    a = MailhouseProcess(
        root / "a",
        host="127.0.0.2",
        hostname="mx.a.test",
        services=("smtp", "submission"),
        ports={"smtp": 25},
        extra=mh_extra(dns),
    )
    b = MailhouseProcess(
        root / "b",
        host="127.0.0.3",
        hostname="mx.b.test",
        services=("smtp",),
        ports={"smtp": 25},
        extra=mh_extra(dns),
        verify_inbound=True,  # b.test checks SPF and DKIM of what A sends
    )
    a.add_domain("a.test")
    # publish a.test's DKIM keys (made by `domain add`) and SPF, as `mailhouse dns` prints them
    keys = a.admin(lambda adm: adm.store.get_dkim_keys("a.test"))
    dns.update(
        txt={
            **{f"{k.selector}._domainkey.a.test": k.public_record for k in keys},
            "a.test": "v=spf1 ip4:127.0.0.0/8 -all",  # A connects from the default loopback source
        }
    )
    a.add_user("alice@a.test")
    b.add_domain("b.test")
    b.add_user("bob@b.test")
    lab_: Lab | None = None

    def rcpt_reply(addr: str) -> bytes:
        if addr.startswith("temp") and lab_ is not None and lab_.temp_ok:
            return b"250 2.1.5 Ok"
        return default_rcpt_reply(addr)

    c = FakeSMTP("127.0.0.4", 25, rcpt_reply=rcpt_reply).start_thread()
    postfix = postfix_factory(mode="local", host="127.0.0.6", port=25, domains=["pf.test"])
    a.start()
    b.start()
    lab_ = Lab(a, b, c, dns, postfix)
    try:
        yield lab_
    finally:
        a.stop()
        b.stop()
        c.stop_thread()
        assert not dns.forwarded()


def test_submission_delivered_to_other_mailhouse_via_mx(lab: Lab) -> None:
    token = secrets.token_hex(6)
    swaks_submit(lab.a, "bob@b.test", message(token, "bob@b.test"))
    got = wait_until(lambda: find(lab.b, "bob@b.test", token), timeout=45, what="bob's copy")
    assert len(got) == 1
    assert b"Return-Path: <alice@a.test>" in got[0]
    assert b"by mx.b.test" in got[0] and b"from mx.a.test" in got[0]  # came over SMTP from A
    # b.test sees valid DKIM signatures (RSA and Ed25519) and SPF pass for a.test
    results = got[0].split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")
    assert b"spf=pass smtp.mailfrom=a.test" in results
    assert results.count(b"dkim=pass header.d=a.test") == 2, results
    assert "queue is empty" in wait_until(lambda: "queue is empty" in queue_list(lab.a) and queue_list(lab.a))
    assert any("query[MX] b.test" in q for q in lab.dns.queries())


def test_550_at_rcpt_bounces_with_remote_reply_and_notify_never(lab: Lab) -> None:
    token, quiet = secrets.token_hex(6), secrets.token_hex(6)
    submit(lab.a, ["nosuch@b.test"], message(token, "nosuch@b.test"))
    submit(lab.a, ["nosuch2@b.test"], message(quiet, "nosuch2@b.test"), rcpt_options=("NOTIFY=NEVER",))
    bounce = wait_until(lambda: find(lab.a, "alice@a.test", token), timeout=45, what="bounce")[0]
    assert b"Return-Path: <>" in bounce  # RFC 5321 §4.5.5: null sender
    fields = dsn_fields(bounce)
    rcpt = fields[1]
    assert rcpt["Final-Recipient"] == "rfc822; nosuch@b.test"
    assert rcpt["Action"] == "failed" and rcpt["Status"].startswith("5.")
    assert rcpt["Diagnostic-Code"].startswith("smtp; 55") and rcpt["Remote-MTA"] == "dns; mx.b.test"
    wait_until(lambda: "queue is empty" in queue_list(lab.a), what="empty queue")
    assert find(lab.a, "alice@a.test", quiet) == []  # NOTIFY=NEVER honoured


def test_mixed_recipients_handled_one_by_one(lab: Lab) -> None:
    token = secrets.token_hex(6)
    rcpts = ["ok@c.test", "perm@c.test", "temp@c.test"]
    n0 = len(lab.c.transactions)
    submit(lab.a, rcpts, message(token, "ok@c.test"))
    bounce = wait_until(lambda: find(lab.a, "alice@a.test", token), what="bounce for perm@")[0]
    per_rcpt = dsn_fields(bounce)[1:]
    assert [f["Final-Recipient"] for f in per_rcpt] == ["rfc822; perm@c.test"]  # only the 550 one
    assert "550 5.1.1 <perm@c.test>: Recipient address rejected" in per_rcpt[0]["Diagnostic-Code"]
    tx = [t for t in lab.c.transactions[n0:] if token.encode() in t.data]
    assert [t.accepted for t in tx] == [["ok@c.test"]]
    listing = wait_until(lambda: "temp@c.test  deferred" in queue_list(lab.a) and queue_list(lab.a))
    assert "451 4.3.0" in listing and "ok@c.test" not in listing and "perm@c.test" not in listing
    lab.temp_ok = True
    try:
        wait_until(
            lambda: any(
                t.accepted == ["temp@c.test"] and token.encode() in t.data for t in lab.c.transactions
            ),
            timeout=20,
            what="retry of temp@",
        )
    finally:
        lab.temp_ok = False
    wait_until(lambda: "queue is empty" in queue_list(lab.a), what="empty queue")
    assert len(find(lab.a, "alice@a.test", token)) == 1  # no second bounce


def test_destination_down_deferred_then_delivered(lab: Lab) -> None:
    token = secrets.token_hex(6)
    submit(lab.a, ["carol@d.test"], message(token, "carol@d.test"))
    listing = wait_until(
        lambda: "carol@d.test  deferred" in queue_list(lab.a) and queue_list(lab.a), what="defer"
    )
    assert "451 4.4.1" in listing
    qid = next(ln.split()[0] for ln in listing.splitlines() if ln[:1].isalnum() and "open" in ln)
    shown = lab.a.cli("queue", "show", qid).stdout
    assert "carol@d.test  deferred" in shown and "attempts:" in shown
    d = FakeSMTP("127.0.0.5", 25).start_thread()
    try:
        lab.a.cli("queue", "retry", qid, check=False)  # may already be delivered by the 1 s backoff
        wait_until(
            lambda: any(token.encode() in t.data for t in d.transactions), timeout=20, what="delivery to d"
        )
        wait_until(lambda: "queue is empty" in queue_list(lab.a), what="empty queue")
    finally:
        d.stop_thread()


def test_null_mx_bounces_at_once(lab: Lab) -> None:
    token = secrets.token_hex(6)
    submit(lab.a, ["x@null.test"], message(token, "x@null.test"))
    bounce = wait_until(lambda: find(lab.a, "alice@a.test", token), timeout=10, what="null MX bounce")[0]
    rcpt = dsn_fields(bounce)[1]
    assert rcpt["Status"] == "5.1.10" and "556 5.1.10" in rcpt["Diagnostic-Code"]


def test_queue_delete(lab: Lab) -> None:
    token = secrets.token_hex(6)
    submit(lab.a, ["dave@down.test"], message(token, "dave@down.test"))
    listing = wait_until(lambda: "dave@down.test  deferred" in queue_list(lab.a) and queue_list(lab.a))
    qid = next(ln.split()[0] for ln in listing.splitlines() if ln[:1].isalnum() and "open" in ln)
    assert lab.a.cli("queue", "delete", qid).returncode == 0
    assert "queue is empty" in queue_list(lab.a)
    assert lab.a.cli("queue", "show", qid, check=False).returncode == 1


def test_mailhouse_relays_to_postfix(lab: Lab) -> None:
    token = secrets.token_hex(6)
    submit(lab.a, ["frank@pf.test"], message(token, "frank@pf.test"))
    files = lab.postfix.wait_delivered(1, "frank@pf.test", timeout=20)
    assert any(token.encode() in Path(f).read_bytes() for f in files)


def test_postfix_relays_to_mailhouse(lab: Lab, postfix_factory: Any) -> None:
    relay = postfix_factory(mode="relay", host="127.0.0.9", relay_to="127.0.0.3:25", relay_domains=["b.test"])
    token = secrets.token_hex(6)
    with smtplib.SMTP(*relay.address, timeout=20) as s:
        s.sendmail("someone@pf.test", ["bob@b.test"], message(token, "bob@b.test", "someone@pf.test"))
    got = wait_until(lambda: find(lab.b, "bob@b.test", token), timeout=45, what="relayed copy")
    assert b"Return-Path: <someone@pf.test>" in got[0]


def test_lifetime_expired_bounces_after_delay_warning(tmp_path: Path, lab: Lab) -> None:
    e = MailhouseProcess(
        tmp_path,
        host="127.0.0.7",
        hostname="mx.e.test",
        services=("smtp", "submission"),
        ports={"smtp": 25},
        extra=mh_extra(lab.dns, lifetime=3, delay_warning=1),
    )
    e.add_domain("a.test")  # the same helper submits as alice@a.test
    e.add_user("alice@a.test")
    with e:
        token = secrets.token_hex(6)
        submit(e, ["gone@down.test"], message(token, "gone@down.test"))

        def both() -> list[bytes]:
            got = find(e, "alice@a.test", token)
            return got if len(got) >= 2 else []

        got = wait_until(both, timeout=20, what="delay warning and bounce")
        actions = sorted(dsn_fields(m)[1]["Action"] for m in got)
        assert actions == ["delayed", "failed"]
        failed = next(m for m in got if dsn_fields(m)[1]["Action"] == "failed")
        assert dsn_fields(failed)[1]["Status"] == "4.4.7"
        assert "451 4.4.1" in dsn_fields(failed)[1]["Diagnostic-Code"]  # the last reply is carried
        wait_until(lambda: "queue is empty" in queue_list(e), what="empty queue")


def test_big_submission_streams_signed_relayed_and_verified(lab: Lab) -> None:
    """Issue 12 item 2: an 8 MB submission is spooled, DKIM-signed with a streamed body hash,
    queued through `put_file`, relayed to B, and verified there (streamed) and here by dkimpy."""
    import dkim as dkimpy

    token = secrets.token_hex(6)
    body = (b"tabs\tand  double  spaces \r\n.leading dot\r\n" + b"x" * 76 + b"\r\n") * 80_000
    head = f"From: <alice@a.test>\r\nTo: <bob@b.test>\r\nSubject: big {token}\r\n\r\n".encode()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(*lab.a.addr("submission"), timeout=120) as s:
        s.starttls(context=ctx)
        s.login("alice@a.test", PASSWORD)
        assert s.sendmail("alice@a.test", ["bob@b.test"], head + body) == {}
    got = wait_until(lambda: find(lab.b, "bob@b.test", token), timeout=120, what="bob's big copy")
    assert len(got) == 1
    msg = got[0]
    assert msg.endswith(b"\r\n\r\n" + body)  # byte-exact after relay (dot-stuffing undone twice)
    results = msg.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")
    assert results.count(b"dkim=pass header.d=a.test") == 2, results  # B's streamed verification
    keys = lab.a.admin(lambda adm: adm.store.get_dkim_keys("a.test"))
    records = {f"{k.selector}._domainkey.a.test.".encode(): k.public_record.encode() for k in keys}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    verifier = dkimpy.DKIM(msg)
    assert [verifier.verify(idx=i, dnsfunc=dnsfunc) for i in range(2)] == [True, True]
    assert "queue is empty" in wait_until(lambda: "queue is empty" in queue_list(lab.a) and queue_list(lab.a))
