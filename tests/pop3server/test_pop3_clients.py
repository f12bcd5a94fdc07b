"""Debian's fetchmail and getmail6 fetch and delete, over pop3s, mail that was
delivered to Mailhouse over SMTP."""

from __future__ import annotations

import os
import poplib
import subprocess
from pathlib import Path

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

from .conftest import deliver, login, new_account, sample, unverified


def _messages(directory: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in directory.iterdir() if p.is_file())


def _remaining(mh: MailhouseProcess, user: str) -> int:
    c = poplib.POP3_SSL(*mh.addr("pop3s"), context=unverified(), timeout=30)
    login(c, user)
    n = c.stat()[0]
    c.quit()
    return n


def test_fetchmail_fetches_and_deletes(pop3_strict: MailhouseProcess, tmp_path: Path) -> None:
    user = new_account(pop3_strict)
    deliver(pop3_strict, user, [sample(i) for i in range(1, 4)])
    out = tmp_path / "out"
    out.mkdir()
    host, port = pop3_strict.addr("pop3s")
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll {host} service {port} protocol POP3 timeout 30\n"
        f'  user "{user}" there with password "{PASSWORD}" is "nobody" here\n'
        "  ssl no sslcertck fetchall nokeep\n"
        f"  mda \"/bin/sh -c 'cat > {out}/msg.$$'\"\n"
    )
    rc.chmod(0o600)
    r = subprocess.run(
        [
            "fetchmail",
            "-f",
            str(rc),
            "--idfile",
            str(tmp_path / "fetchids"),
            "--pidfile",
            str(tmp_path / "pid"),
            "-v",
            "--nosyslog",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert r.returncode == 0, r.stdout + r.stderr  # 0: mail retrieved
    got = _messages(out)
    assert len(got) == 3, r.stdout + r.stderr
    for i in range(1, 4):
        assert any(f"Subject: message {i}".encode() in m for m in got)
    assert _remaining(pop3_strict, user) == 0  # DELE + QUIT: gone from the server


def test_getmail_fetches_and_deletes(pop3_strict: MailhouseProcess, tmp_path: Path) -> None:
    user = new_account(pop3_strict)
    deliver(pop3_strict, user, [sample(i) for i in range(1, 4)])
    out = tmp_path / "out"
    out.mkdir()
    host, port = pop3_strict.addr("pop3s")
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3SSLRetriever\n"
        f"server = {host}\nport = {port}\nusername = {user}\npassword = {PASSWORD}\n"
        # MDA_external: getmail refuses Maildir delivery as root (as the CI runs)
        "[destination]\ntype = MDA_external\npath = /bin/sh\n"
        f'arguments = ("-c", "cat > {out}/msg.$$$$")\nallow_root_commands = true\n'
        "[options]\ndelete = true\nread_all = true\nverbose = 2\n"
    )
    r = subprocess.run(
        ["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(rc)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    got = _messages(out)
    assert len(got) == 3, r.stdout + r.stderr
    for i in range(1, 4):
        assert any(f"Subject: message {i}".encode() in m for m in got)
    assert _remaining(pop3_strict, user) == 0
