"""Start-up failures of `mailhouse serve` are one line saying what to do, never a traceback
(issue 16 §9): a port in use (one process and workers), a privileged port without the right,
an unusable certificate or key, a service this version does not have."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mailhouse import tls


def _serve(cfg: Path, *, user: int | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mailhouse", "--config", str(cfg), "serve"]
    if user is not None:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed"
        cmd = [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    env = {k: v for k, v in os.environ.items() if k != "MAILHOUSE_CONFIG"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("mailhouse: ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _cfg(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "mailhouse.toml"
    p.write_text(f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n{body}')
    return p


@pytest.mark.parametrize("workers", [1, 2])
def test_port_in_use(tmp_path: Path, workers: int) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        extra = f"[server]\nworkers = {workers}\n"
        line = _one_line(_serve(_cfg(tmp_path, f'[listen]\nsmtp = "127.0.0.1:{port}"\n{extra}')))
    assert f"127.0.0.1:{port}" in line and "in use" in line


def test_privileged_port_without_the_right(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test drops from root to nobody to try port 25; run the suite as root (as CI does)")
    # pytest's own temp tree is root's alone: nobody needs a directory it can enter
    root = Path(tempfile.mkdtemp(prefix="mh-priv-"))
    try:
        root.chmod(0o755)
        (root / "data").mkdir()
        (root / "data").chmod(0o777)
        line = _one_line(_serve(_cfg(root, '[listen]\nsmtp = "127.0.0.9:25"\n'), user=65534))
    finally:
        shutil.rmtree(root)
    assert "127.0.0.9:25" in line and "CAP_NET_BIND_SERVICE" in line


def test_unusable_certificate(tmp_path: Path) -> None:
    cert_a, key_a = tls.ensure_self_signed(tmp_path / "a", "mail.example.org")
    _, key_b = tls.ensure_self_signed(tmp_path / "b", "mail.example.org")
    listen = '[listen]\nsmtp = "127.0.0.1:0"\n'
    line = _one_line(_serve(_cfg(tmp_path, f'{listen}[tls]\ncert = "{cert_a}"\nkey = "{key_b}"\n')))
    assert "does not match" in line
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    line = _one_line(_serve(_cfg(tmp_path, f'{listen}[tls]\ncert = "{garbage}"\nkey = "{key_a}"\n')))
    assert str(garbage) in line and "PEM" in line


def test_unknown_service(tmp_path: Path) -> None:
    # (was test_service_not_in_this_version: managesieve is a listener since issue 17)
    r = _serve(_cfg(tmp_path, '[listen]\nmanagesieves = "127.0.0.1:4190"\n'))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "listen.managesieves" in r.stderr
