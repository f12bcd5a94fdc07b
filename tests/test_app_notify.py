"""`mailhouse serve` under systemd's Type=notify (app.py + runtime/sdnotify.py), as a real process:
READY only once every listener (and every worker) serves, RELOADING/READY around SIGHUP,
STOPPING on SIGTERM."""

from __future__ import annotations

import signal
import smtplib
import socket
from pathlib import Path

import pytest

from tests.mailhouse_proc import MailhouseProcess


def _messages(s: socket.socket, n: int, timeout: float = 60.0) -> list[bytes]:
    s.settimeout(timeout)
    return [s.recv(4096) for _ in range(n)]


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_reloading_stopping(tmp_path: Path, workers: int) -> None:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    extra = f"[server]\nworkers = {workers}\n" if workers > 1 else ""
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", services=("smtp", "imap"), extra=extra)
    base_env = mh.env()
    mh.env = lambda: dict(base_env, NOTIFY_SOCKET=path)  # type: ignore[method-assign]
    try:
        mh.start()
        ready = _messages(sock, 1)[0]
        assert ready.startswith(b"READY=1"), ready
        if workers > 1:
            assert b"with 2 workers" in ready
        with smtplib.SMTP(*mh.addr("smtp"), timeout=20) as c:  # serving when READY came
            assert c.noop()[0] == 250
        assert mh.proc is not None
        mh.proc.send_signal(signal.SIGHUP)
        assert _messages(sock, 2) == [b"RELOADING=1", b"READY=1"]
        mh.proc.send_signal(signal.SIGTERM)
        assert _messages(sock, 1) == [b"STOPPING=1"]
        assert mh.proc.wait(30) == 0
    finally:
        mh.stop()
        sock.close()
