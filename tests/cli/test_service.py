"""`mailhouse service install`: the unit file, checked by systemd's own `systemd-analyze verify`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_admin_cli import run

HARDENING = [
    "Type=notify",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "Restart=on-failure",
]


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze (Debian package systemd) is a test dependency"
    return subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def test_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "mailhouse.toml"
    cfg.write_text(f'hostname = "mail.example.org"\ndata_dir = "{data}"\n')
    unit = tmp_path / "mailhouse.service"
    r = run(cfg, "service", "install", "--output", str(unit), "--user", "mail")
    assert r.returncode == 0, r.stderr
    text = unit.read_text()
    for line in HARDENING:
        assert line in text.splitlines(), line
    assert f"ReadWritePaths={data}" in text and "User=mail" in text
    assert f"{sys.executable} -m mailhouse --config {cfg} serve" in text
    data.mkdir()
    v = _verify(unit)
    assert v.returncode == 0 and "error" not in (v.stdout + v.stderr).lower(), v.stdout + v.stderr
    # the check can fail: systemd refuses a unit whose ExecStart is not an absolute path
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace(f"ExecStart={sys.executable}", "ExecStart=python3-nowhere"))
    assert _verify(broken).returncode != 0


def test_needs_a_config_file(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mailhouse", "service", "install", "--output", "-"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "MAILHOUSE_CONFIG"},
        timeout=60,
    )
    assert r.returncode == 2 and "configuration file" in r.stderr


@pytest.mark.parametrize("args", [["--version"]])
def test_version(tmp_path: Path, args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "mailhouse", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("mailhouse ")


def test_unknown_log_level_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mailhouse", "--log-level", "LOUD", "domain", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--log-level" in r.stderr


def test_log_file_folder_is_writable(tmp_path: Path) -> None:
    data, logs = tmp_path / "data", tmp_path / "logs"
    logs.mkdir()
    cfg = tmp_path / "mailhouse.toml"
    cfg.write_text(
        f'hostname = "mail.example.org"\ndata_dir = "{data}"\n[log]\nfile = "{logs}/mailhouse.log"\n'
    )
    unit = tmp_path / "mailhouse.service"
    assert run(cfg, "service", "install", "--output", str(unit), "--user", "mail").returncode == 0
    assert f"ReadWritePaths={data} {logs}" in unit.read_text()
