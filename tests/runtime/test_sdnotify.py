"""sd_notify(3) datagrams: to a path socket, to an abstract one, and nothing without $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from mailhouse.runtime import sdnotify


def _listen(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with _listen(path) as s:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify(sdnotify.READY, "STATUS=up")
        assert s.recv(4096) == b"READY=1\nSTATUS=up"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"mailhouse-test-{os.getpid()}"
    with _listen("\0" + name) as s:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify(sdnotify.STOPPING)
        assert s.recv(4096) == b"STOPPING=1"


def test_no_socket_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify(sdnotify.READY) is False


def test_send_failure_is_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.notify(sdnotify.READY) is False
