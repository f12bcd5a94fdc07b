"""`mailhouse mail send|list|read` against Mailhouse and against Postfix + Dovecot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.mailhouse_proc import PASSWORD


def run_mail(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailhouse", "mail", "--client-config", str(cfg), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "MAILHOUSE_CONFIG"},
    )


def client_config(
    path: Path,
    address: str,
    smtp: tuple[str, int, str],
    imap: tuple[str, int, str] | None,
    password: str | None = PASSWORD,
    insecure: bool = True,
) -> Path:
    lines = [f'address = "{address}"']
    if password is not None:
        lines.append(f'password = "{password}"')
    lines.append(f"insecure = {'true' if insecure else 'false'}")
    lines += ["[smtp]", f'host = "{smtp[0]}"', f"port = {smtp[1]}", f'security = "{smtp[2]}"']
    if imap:
        lines += ["[imap]", f'host = "{imap[0]}"', f"port = {imap[1]}", f'security = "{imap[2]}"']
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def wait_list(cfg: Path, needle: str, folder: str = "INBOX", timeout: float = 15.0) -> str:
    end = time.time() + timeout
    out = ""
    while time.time() < end:
        r = run_mail(cfg, "list", folder)
        out = r.stdout + r.stderr
        if needle in r.stdout:
            return r.stdout
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} not listed: {out}")


def uid_of(listing: str, needle: str) -> str:
    for line in listing.splitlines():
        if needle in line:
            return line.split()[1] if line.startswith("N ") else line.split()[0]
    raise AssertionError(listing)


@pytest.fixture
def mh(mailhouse):
    return mailhouse


def test_send_list_read_against_mailhouse(mh, tmp_path):
    host = mh.host
    alice = client_config(
        tmp_path / "alice.toml",
        "alice@example.org",
        (host, mh.ports["submission"], "starttls"),
        (host, mh.ports["imaps"], "tls"),
    )
    bob = client_config(
        tmp_path / "bob.toml",
        "bob@example.org",
        (host, mh.ports["submissions"], "tls"),
        (host, mh.ports["imaps"], "tls"),
    )
    att = tmp_path / "report.csv"
    att.write_text("a,b\n1,2\n")
    r = run_mail(
        alice,
        "send",
        "--to",
        "bob@example.org",
        "--subject",
        "Über CLI",
        "--attach",
        str(att),
        stdin="Body from stdin.\nSecond line.\n",
    )
    assert r.returncode == 0, r.stderr
    listing = wait_list(bob, "Über CLI")
    assert "alice@example.org" in listing and listing.startswith("N ")
    uid = uid_of(listing, "Über CLI")
    r = run_mail(bob, "read", uid)
    assert r.returncode == 0, r.stderr
    assert "Subject: Über CLI" in r.stdout and "Body from stdin." in r.stdout
    assert "report.csv" in r.stdout and "text/csv" in r.stdout
    raw = run_mail(bob, "read", uid, "--raw").stdout
    assert "DKIM-Signature:" in raw  # it went through the MSA
    assert not run_mail(bob, "list").stdout.startswith("N ")  # read marked it \Seen
    # submission over implicit TLS, body from a file, Bcc hidden
    body = tmp_path / "body.txt"
    body.write_text("file body\n")
    r = run_mail(
        bob,
        "send",
        "--to",
        "alice@example.org",
        "--bcc",
        "bob@example.org",
        "--subject",
        "From a file",
        "--body-file",
        str(body),
    )
    assert r.returncode == 0, r.stderr
    uid2 = uid_of(wait_list(alice, "From a file"), "From a file")
    assert "Bcc" not in run_mail(alice, "read", uid2, "--raw").stdout
    wait_list(bob, "From a file")  # the Bcc copy


def test_password_from_stdin_and_wrong_password(mh, tmp_path):
    cfg = client_config(
        tmp_path / "c.toml",
        "alice@example.org",
        (mh.host, mh.ports["submission"], "starttls"),
        (mh.host, mh.ports["imaps"], "tls"),
        password=None,
    )
    r = run_mail(
        cfg,
        "--password-stdin",
        "send",
        "--to",
        "bob@example.org",
        "--subject",
        "pw on stdin",
        stdin=PASSWORD + "\nThe body.\n",
    )
    assert r.returncode == 0, r.stderr
    r = run_mail(cfg, "--password-stdin", "list", stdin="wrong-password\n")
    assert r.returncode == 1 and "mailhouse mail:" in r.stderr
    r = run_mail(cfg, "list")  # no password anywhere, no terminal
    assert r.returncode == 1 and "no password" in r.stderr


def test_self_signed_certificate_refused_without_insecure(mh, tmp_path):
    cfg = client_config(
        tmp_path / "c.toml",
        "alice@example.org",
        (mh.host, mh.ports["submissions"], "tls"),
        (mh.host, mh.ports["imaps"], "tls"),
        insecure=False,
    )
    r = run_mail(cfg, "list")
    assert r.returncode == 1 and "certificate" in r.stderr.lower()
    assert "--insecure" in r.stderr and "insecure = true" in r.stderr  # the way out is named
    r = run_mail(cfg, "--insecure", "list")
    assert r.returncode == 0, r.stderr


def test_against_postfix_and_dovecot(postfix_factory, dovecot_factory, tmp_path, request):
    users = {"ann@example.test": "ann-secret", "ben@example.test": "ben-secret"}
    # Postfix authenticates through Dovecot's auth socket (smtpd_sasl_type = dovecot); the
    # socket lives in a directory both can reach (pytest's tmp dirs are private to root)
    sasl_dir = Path(tempfile.mkdtemp(prefix="mh-sasl-"))
    sasl_dir.chmod(0o755)
    auth_sock = sasl_dir / "auth-client"
    postfix = postfix_factory(
        domains=["example.test"],
        mailboxes=list(users),  # example.test/<local>/, the layout Dovecot reads
        mynetworks="127.0.0.2/32",  # loopback clients are not trusted: they must authenticate
        main={
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(auth_sock),
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
        },
    )
    dovecot = dovecot_factory(
        users=users,
        mail_dir=postfix.mail_dir,  # Dovecot serves what Postfix delivers
        extra_conf=f"service auth {{\n  unix_listener {auth_sock} {{\n    mode = 0666\n  }}\n}}\n",
    )
    request.addfinalizer(lambda: shutil.rmtree(sasl_dir, ignore_errors=True))
    # Postfix started first (Dovecot serves its mail_dir): the readiness probe's smtpd found no
    # auth socket yet, failed ("no SASL authentication mechanisms") and master throttles smtpd for
    # 60 s after that. Once the socket exists, a restart of master clears the throttle.
    deadline = time.monotonic() + 20
    while not auth_sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert auth_sock.exists(), "Dovecot made no auth socket"
    postfix.stop(cleanup=False)
    postfix.start()
    ann = client_config(
        tmp_path / "ann.toml",
        "ann@example.test",
        (postfix.host, postfix.port, "none"),
        (dovecot.host, dovecot.imap_port, "none"),
        password="ann-secret",
    )
    ben = client_config(
        tmp_path / "ben.toml",
        "ben@example.test",
        (postfix.host, postfix.port, "none"),
        (dovecot.host, dovecot.imap_port, "none"),
        password="ben-secret",
    )
    att = tmp_path / "pic.png"
    att.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    r = run_mail(
        ann,
        "send",
        "--to",
        "ben@example.test",
        "--subject",
        "Via Postfix",
        "--attach",
        str(att),
        stdin="Hello Ben.\n",
    )
    assert r.returncode == 0, r.stderr + postfix.log()
    assert "sasl_username=ann@example.test" in postfix.log(200)
    listing = wait_list(ben, "Via Postfix", timeout=30)
    uid = uid_of(listing, "Via Postfix")
    r = run_mail(ben, "read", uid)
    assert (
        r.returncode == 0 and "Hello Ben." in r.stdout and "pic.png" in r.stdout and "image/png" in r.stdout
    )
    # messages Dovecot already holds, in another folder
    dovecot.add_message(
        "ben@example.test",
        b"From: x@example.test\r\nSubject: Archived one\r\n\r\nold\r\n",
        mailbox="Archive",
        flags=["\\Seen"],
    )
    out = run_mail(ben, "list", "Archive").stdout
    assert "Archived one" in out and not out.startswith("N ")
    bad = client_config(
        tmp_path / "bad.toml",
        "ann@example.test",
        (postfix.host, postfix.port, "none"),
        (dovecot.host, dovecot.imap_port, "none"),
        password="wrong",
    )
    r = run_mail(bad, "send", "--to", "ben@example.test", "--subject", "x", stdin="x")
    assert r.returncode == 1 and "535" in r.stderr


@pytest.mark.parametrize("offered", [True, False])
def test_requiretls_sends_the_mail_parameter_only_where_offered(tmp_path, offered):
    """RFC 8689 §4.1: `send --requiretls` puts REQUIRETLS on MAIL FROM over the STARTTLS session
    of a server that advertises it; a server that does not gets no transaction at all."""
    from tests.smtpclient.fake_server import FakeSMTP

    exts = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS")
    server = FakeSMTP(
        extensions=(*exts, "REQUIRETLS") if offered else exts,
        tls_dir=tmp_path / "tls",
        auth=("alice@example.org", PASSWORD),
    ).start_thread()
    try:
        cfg = client_config(
            tmp_path / "c.toml", "alice@example.org", (server.host, server.port, "starttls"), None
        )
        r = run_mail(cfg, "send", "--requiretls", "--to", "bob@example.org", "--subject", "s", stdin="b\n")
        if offered:
            assert r.returncode == 0, r.stderr
            (tx,) = server.transactions
            assert tx.mail.upper().endswith(b" REQUIRETLS") and server.tls_sessions == 1
        else:
            assert r.returncode == 1 and "does not offer REQUIRETLS" in r.stderr
            assert server.transactions == [] and not any(c.startswith(b"MAIL") for c in server.commands)
        # RFC 8689 §4.1: never over a session without TLS
        plain = client_config(
            tmp_path / "p.toml", "alice@example.org", (server.host, server.port, "none"), None
        )
        r = run_mail(plain, "send", "--requiretls", "--to", "bob@example.org", stdin="b\n")
        assert r.returncode == 1 and "--requiretls needs TLS" in r.stderr
    finally:
        server.stop_thread()
