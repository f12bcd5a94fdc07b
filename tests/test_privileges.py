"""Root start-up then drop (issue 16 §1, runtime/privileges.py), through real sockets.

The suite runs as root: `mailhouse serve` listens on port 25 of a free 127.0.0.x address, drops to
`nobody`, and every process of its session must show that uid in /proc/PID/status; mail delivered
over SMTP is read back over IMAP, the data files belong to `nobody`, and SIGHUP reloads. After the drop, a renewed key
readable by root only is refused in one line, and [acme] renews into a directory that was root's.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import random
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from mailhouse import config as config_mod
from mailhouse import tls
from mailhouse.runtime import privileges
from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.peers.ports import free_port

NOBODY = pwd.getpwnam("nobody")


def _free_port25_host() -> str:
    """A 127.0.0.x address whose port 25 is free (never 127.0.0.1, where a system MTA may be)."""
    for _ in range(200):
        host = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
        with socket.socket() as s:
            try:
                s.bind((host, 25))
            except OSError:
                continue
        return host
    raise RuntimeError("no 127.0.x.y with port 25 free")


@pytest.fixture
def root() -> Iterator[Path]:
    # the dropped user must reach its data directory: not under root's 0700 pytest tmp dir
    d = Path(tempfile.mkdtemp(prefix="mh-privdrop-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _session_uids(pid: int) -> dict[int, tuple[list[str], list[str]]]:
    """(Uid, Gid) lines of /proc/PID/status for every process in the session PID leads."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) != pid:  # field 6: session id
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        out[int(entry)] = (fields["Uid"].split(), fields["Gid"].split())
    return out


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _serve(
    root: Path, extra: str, workers: int = 1, services: tuple[str, ...] = ("smtp", "imaps", "http")
) -> MailhouseProcess:
    host = _free_port25_host()
    server = f"\n[server]\nworkers = {workers}\n" if workers > 1 else ""
    return MailhouseProcess(root, host=host, services=services, ports={"smtp": 25}, extra=extra + server)


@pytest.mark.parametrize("workers", [1, 2])
def test_root_binds_port_25_then_serves_as_nobody(root: Path, workers: int) -> None:
    mh = _serve(root, 'user = "nobody"', workers)
    mh.add_domain("example.org")  # as root, before start: the store files start out root's
    mh.add_user("alice@example.org")
    mh.start()
    try:
        assert mh.proc is not None
        assert mh.wait_log("serving as nobody")
        if workers > 1:
            assert mh.wait_log("ready", timeout=30)
        procs = _session_uids(mh.proc.pid)
        assert len(procs) >= workers + (1 if workers > 1 else 0), procs
        want = [str(NOBODY.pw_uid)] * 4, [str(NOBODY.pw_gid)] * 4
        assert all(ids == want for ids in procs.values()), procs  # real, effective, saved, fs
        with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
            c.sendmail("bob@example.net", ["alice@example.org"], b"Subject: dropped\r\n\r\nhello\r\n")
        imap = imaplib.IMAP4_SSL(*mh.addr("imaps"), ssl_context=_tls(), timeout=30)
        imap.login("alice@example.org", PASSWORD)
        imap.select("INBOX")
        _, data = imap.search(None, "SUBJECT", "dropped")
        assert data[0].split(), "the message delivered over SMTP is in the INBOX"
        imap.logout()
        owners = {p: p.lstat().st_uid for p in [mh.data_dir, *mh.data_dir.rglob("*")]}
        assert set(owners.values()) == {NOBODY.pw_uid}, owners
        os.kill(mh.proc.pid, signal.SIGHUP)
        assert mh.wait_log("configuration reloaded")
        with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
            assert c.noop()[0] == 250
    finally:
        code = mh.stop()
        assert code == 0, mh.logtext()[-3000:]


def _serve_fails(mh: MailhouseProcess) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-m", "mailhouse", "serve"], env=mh.env(), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    return r.stderr.strip().splitlines()


def test_root_on_port_25_without_user_refuses_in_one_line(root: Path) -> None:
    lines = _serve_fails(_serve(root, ""))
    assert len(lines) == 1 and "port 25" in lines[0] and "user" in lines[0] and "allow_root" in lines[0], (
        lines
    )


def test_unknown_user_refuses_in_one_line(root: Path) -> None:
    lines = _serve_fails(_serve(root, 'user = "no-such-mailhouse-user"'))
    assert len(lines) == 1 and "no such system user" in lines[0], lines


def test_allow_root_keeps_root(root: Path) -> None:
    mh = _serve(root, "allow_root = true").start()
    try:
        # the ports open before the node installs its SIGTERM handler: wait until it serves
        assert mh.wait_log(" ready (pid ", timeout=30), mh.logtext()[-2000:]
        assert mh.proc is not None
        assert Path(f"/proc/{mh.proc.pid}/status").read_text().count("\t0\t0\t0\t0") == 2  # Uid and Gid
    finally:
        code = mh.stop()
        assert code == 0, mh.logtext()[-3000:]


def test_config_keys() -> None:
    cfg = config_mod.from_dict({"user": "mailhouse", "group": "mail", "allow_root": True})
    assert (cfg.user, cfg.group, cfg.allow_root) == ("mailhouse", "mail", True)
    with pytest.raises(config_mod.ConfigError, match="group"):
        config_mod.from_dict({"group": "mail"})
    with pytest.raises(config_mod.ConfigError, match="user"):
        config_mod.from_dict({"user": ""})


def test_identity_refuses_root() -> None:
    with pytest.raises(privileges.PrivilegeError, match="unprivileged"):
        privileges.identity("root")
    who = privileges.identity("nobody")
    assert (who.uid, who.gid) == (NOBODY.pw_uid, NOBODY.pw_gid) and 0 not in who.groups


def test_user_set_but_started_unprivileged_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        privileges.check_not_root("nobody")  # the suite runs as root: "nobody" is not who serves
    assert "only used when started as root" in caplog.text


def test_systemd_socket_activation(root: Path) -> None:
    """LISTEN_FDS (sd_listen_fds(3)): the passed socket serves [listen] smtp; nothing binds it again
    (on today's code the bind of the held address fails: EADDRINUSE)."""
    mh = _serve(root, 'user = "nobody"', services=("smtp",))
    sock = socket.socket()
    sock.bind((mh.host, 25))
    sock.listen(16)

    def as_fd3() -> None:
        os.dup2(sock.fileno(), 3)

    logf = open(mh.log, "ab")  # noqa: SIM115 - closed below
    # sh's $$ is the pid that exec keeps, as systemd sets LISTEN_PID to the service's pid
    mh.proc = subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -m mailhouse serve', sys.executable],
        env=mh.env(),
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=as_fd3,
        pass_fds=(3,),
    )
    sock.close()
    logf.close()
    try:
        assert mh.wait_log("ready", timeout=30), mh.logtext()
        assert "listening on 1 socket(s) from systemd" in mh.logtext()
        with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
            assert c.noop()[0] == 250
    finally:
        code = mh.stop()
        assert code == 0, mh.logtext()[-3000:]


# ---------------------------------------------------------------- certificates after the drop


def _root_only_pair(d: Path, name: str) -> tuple[Path, Path]:
    """A certificate and a key readable by root only, in DIR (root's, 0755), as certbot leaves them."""
    made = tls.ensure_self_signed(Path(tempfile.mkdtemp(prefix="mh-pair-")), name)
    d.mkdir(mode=0o755, exist_ok=True)
    cert, key = d / "fullchain.pem", d / "privkey.pem"
    for src, dst, mode in ((made[0], cert, 0o644), (made[1], key, 0o600)):
        tmp = dst.with_suffix(".new")
        tmp.write_bytes(src.read_bytes())
        tmp.chmod(mode)
        os.replace(tmp, dst)  # a new file: a new mtime and inode, as a renewal makes
    shutil.rmtree(made[0].parent.parent, ignore_errors=True)
    return cert, key


def _served_serial(addr: tuple[str, int]) -> int:
    with _tls().wrap_socket(
        socket.create_connection(addr, timeout=20), server_hostname="mail.example.org"
    ) as s:
        der = s.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der).serial_number


def test_root_only_renewed_key_is_refused_clearly_and_the_current_one_kept(root: Path) -> None:
    """An operator's tool renews a key readable by root only: the dropped node cannot read it, says
    so in one line naming the key, and keeps serving the certificate it has."""
    cert, key = _root_only_pair(root / "etc-tls", "mail.example.org")
    extra = f'user = "nobody"\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
    mh = MailhouseProcess(root, services=("imaps",), extra=extra).start()
    try:
        assert mh.proc is not None
        assert mh.wait_log(" ready (pid ", timeout=30), mh.logtext()[-3000:]
        before = _served_serial(mh.addr("imaps"))  # root read the key before the drop
        _root_only_pair(root / "etc-tls", "mail.example.org")  # the renewal, root-only again
        os.kill(mh.proc.pid, signal.SIGHUP)
        assert mh.wait_log("configuration reloaded")
        assert mh.wait_log(f"cannot read key {key} as nobody"), mh.logtext()[-3000:]
        line = next(x for x in mh.logtext().splitlines() if "cannot read key" in x)
        assert "keeping the running one" in line and "mode 0600" in line and "chmod 640" in line, line
        assert _served_serial(mh.addr("imaps")) == before
    finally:
        code = mh.stop()
        assert code == 0, mh.logtext()[-3000:]


def test_acme_renewal_into_a_root_owned_tls_directory_after_the_drop(
    root: Path, dns_server_factory: Any, pebble_factory: Any
) -> None:
    """[tls] files in a directory of root's with a root-only key, and [acme]: the root side hands
    the directory and files to the user, so the dropped node writes and serves pebble's certificate
    (on today's code the write failed with permission denied and the old certificate stayed)."""
    names = ["mail.example.org"]
    dns = dns_server_factory(a={n: ["127.0.0.1"] for n in names})
    pebble = pebble_factory(http_port=free_port(), dnsserver=dns.nameserver)
    cert, key = _root_only_pair(root / "etc-tls", "mail.example.org")
    ca = root / "pebble-ca.pem"  # pebble's own directory is root's (0700)
    shutil.copyfile(pebble.ca_file, ca)
    extra = (
        f'user = "nobody"\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
        f'[acme]\ndirectory = "{pebble.directory}"\nca_file = "{ca}"\nnames = {names!r}\n'
    ).replace("'", '"')
    mh = MailhouseProcess(root, services=("http", "imaps"), ports={"http": pebble.http_port}, extra=extra)
    mh.start()
    try:
        assert mh.wait_log("ACME: certificate for", timeout=90), mh.logtext()[-3000:] + pebble.log()
        assert "ACME: certificate installed" in mh.logtext(), mh.logtext()[-3000:]
        intermediate = x509.load_pem_x509_certificate(pebble.intermediate_pem().encode())
        with _tls().wrap_socket(
            socket.create_connection(mh.addr("imaps"), timeout=20), server_hostname="mail.example.org"
        ) as s:
            der = s.getpeercert(binary_form=True)
        assert der and x509.load_der_x509_certificate(der).issuer == intermediate.subject
        for p in (cert.parent, cert, key):
            assert p.stat().st_uid == NOBODY.pw_uid, p
    finally:
        code = mh.stop()
        assert code == 0, mh.logtext()[-3000:]


def test_log_file_reopened_after_rotation_by_the_dropped_node(root: Path) -> None:
    """`[log] file`: opened by root at start-up, handed to nobody, and after logrotate's default
    rotation (the file moved away) the dropped node writes into a new file at the same path."""
    logdir = root / "log"
    logdir.mkdir()
    os.chown(logdir, NOBODY.pw_uid, NOBODY.pw_gid)  # where the dropped node may create the new file
    logfile = logdir / "mailhouse.log"
    mh = _serve(root, f'user = "nobody"\n[log]\nfile = "{logfile}"\n', services=("smtp",))
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    try:
        mh.log = logfile  # wait_log reads the configured file, not standard error
        assert mh.wait_log("serving as nobody", timeout=30)
        assert mh.wait_log("ready", timeout=30)
        assert logfile.stat().st_uid == NOBODY.pw_uid
        rotated = logdir / "mailhouse.log.1"
        logfile.rename(rotated)  # logrotate without copytruncate: move, then a new file
        with smtplib.SMTP(*mh.addr("smtp"), timeout=30) as c:
            c.sendmail("bob@example.net", ["alice@example.org"], b"Subject: rotated\r\n\r\nhello\r\n")
        assert mh.wait_log("queued as", timeout=30), "nothing written to the new file after rotation"
        assert logfile.stat().st_uid == NOBODY.pw_uid
        assert "queued as" not in rotated.read_text()
    finally:
        code = mh.stop()
        assert code == 0, mh.logtext()[-3000:]
