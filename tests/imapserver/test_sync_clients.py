"""Debian's mbsync (isync) and offlineimap3 syncing an account both ways against Mailhouse:
folders, flags, new and deleted messages, checked on both sides (issue 3 §6)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.imapserver.server_helpers import deliver, login, wait_exists
from tests.mailhouse_proc import PASSWORD, MailhouseProcess


def _maildir_files(d: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") if (d / sub).is_dir() for p in (d / sub).iterdir())


def _flags(p: Path) -> str:
    return p.name.rsplit(":2,", 1)[1] if ":2," in p.name else ""


def _put_local(d: Path, name: str, subject: str, info: str = "") -> None:
    for sub in ("cur", "new", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    target = d / ("cur" if info else "new") / (name + (f":2,{info}" if info else ""))
    target.write_bytes(
        f"From: me@example.org\r\nSubject: {subject}\r\nMessage-ID: <{name}@local>\r\n\r\nlocal\r\n".encode()
    )


def _server_state(mh: MailhouseProcess, user: str, box: str) -> list[tuple[bytes, bytes]]:
    c = login(mh, user)
    typ, _ = c.select(box, readonly=True)
    assert typ == "OK", box
    typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out = []
    for item in data:
        if isinstance(item, tuple):
            subj = item[1].strip().split(b": ", 1)[1]
            out.append((subj, item[0].split(b"FLAGS (", 1)[1].split(b")", 1)[0]))
    c.logout()
    return sorted(out)


def _seed(mh: MailhouseProcess, user: str) -> None:
    deliver(mh, user, "inbox one")
    deliver(mh, user, "inbox two")
    c = login(mh, user)
    wait_exists(c, "INBOX", 2)
    c.create("Projects")
    c.append("Projects", r"(\Flagged)", None, b"Subject: project plan\r\nMessage-ID: <p1@x>\r\n\r\nplan\r\n")
    c.logout()


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"{cmd[0]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_mbsync_two_way(imap_server: MailhouseProcess, tmp_path: Path) -> None:
    user = "sync1"
    _seed(imap_server, user)
    local = tmp_path / "mail"
    local.mkdir()
    cert = imap_server.data_dir / "tls" / "cert.pem"
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""
IMAPAccount mh
Host localhost
Port {imap_server.ports["imaps"]}
User {user}@example.org
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {cert}

IMAPStore remote
Account mh

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
""")
    mbsync = ["mbsync", "-c", str(rc), "-a"]
    _run(mbsync)
    # server → local
    assert len(_maildir_files(local / "INBOX")) == 2
    proj = _maildir_files(local / "Projects")
    assert len(proj) == 1 and "F" in _flags(proj[0])
    for name in ("Sent", "Trash", "Drafts", "Junk", "Archive"):
        assert (local / name).is_dir(), name
    # local changes: seen flag, a deletion, a new message, a new folder
    inbox = _maildir_files(local / "INBOX")
    first = inbox[0]
    first.rename(first.parent.parent / "cur" / (first.name.split(":2,")[0] + ":2,S"))
    inbox[1].unlink()
    _put_local(local / "Projects", "local1", "local message")
    _put_local(local / "LocalFolder", "local2", "in new folder", "S")
    _run(mbsync)
    inbox_state = _server_state(imap_server, user, "INBOX")
    assert len(inbox_state) == 1 and b"\\Seen" in inbox_state[0][1], inbox_state
    assert sorted(s for s, _ in _server_state(imap_server, user, "Projects")) == [
        b"local message",
        b"project plan",
    ]
    assert _server_state(imap_server, user, "LocalFolder") == [(b"in new folder", b"\\Seen")]
    # server-side deletion and flag change propagate back
    c = login(imap_server, user)
    c.select("Projects")
    typ, data = c.search(None, "SUBJECT", '"project plan"')
    c.store(data[0].decode(), "+FLAGS", r"(\Deleted)")
    c.expunge()
    c.select("LocalFolder")
    c.store("1", "+FLAGS", r"(\Answered)")
    c.logout()
    _run(mbsync)
    assert len(_maildir_files(local / "Projects")) == 1
    lf = _maildir_files(local / "LocalFolder")
    assert len(lf) == 1 and "R" in _flags(lf[0])


def test_offlineimap_two_way(imap_server: MailhouseProcess, tmp_path: Path) -> None:
    user = "sync2"
    _seed(imap_server, user)
    local = tmp_path / "oi"
    cert = imap_server.data_dir / "tls" / "cert.pem"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"""
[general]
accounts = mh
metadata = {tmp_path}/meta
ui = quiet

[Account mh]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}
sep = /

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {imap_server.ports["imaps"]}
remoteuser = {user}@example.org
remotepass = {PASSWORD}
ssl = yes
sslcacertfile = {cert}
createfolders = True
""")
    env = dict(os.environ, HOME=str(tmp_path))
    oi = ["offlineimap", "-c", str(rc), "-o", "-u", "quiet"]
    _run(oi, env)
    assert len(_maildir_files(local / "INBOX")) == 2
    proj = _maildir_files(local / "Projects")
    assert len(proj) == 1 and "F" in _flags(proj[0])
    inbox = _maildir_files(local / "INBOX")
    first = inbox[0]
    first.rename(first.parent.parent / "cur" / (first.name.split(":2,")[0] + ":2,S"))
    inbox[1].unlink()
    _put_local(local / "Projects", f"{time.time_ns()}.local1.host", "local message")
    _put_local(local / "LocalFolder", f"{time.time_ns()}.local2.host", "in new folder", "S")
    _run(oi, env)
    inbox_state = _server_state(imap_server, user, "INBOX")
    assert len(inbox_state) == 1 and b"\\Seen" in inbox_state[0][1], inbox_state
    assert sorted(s for s, _ in _server_state(imap_server, user, "Projects")) == [
        b"local message",
        b"project plan",
    ]
    assert [s for s, _ in _server_state(imap_server, user, "LocalFolder")] == [b"in new folder"]
    c = login(imap_server, user)
    c.select("Projects")
    typ, data = c.search(None, "SUBJECT", '"project plan"')
    c.store(data[0].decode(), "+FLAGS", r"(\Deleted)")
    c.expunge()
    c.logout()
    _run(oi, env)
    assert len(_maildir_files(local / "Projects")) == 1
