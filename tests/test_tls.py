"""tls.py: the reloadable server certificate (issue 16 §3) and its one-line errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mailhouse import tls


def test_server_certificate_notices_changed_files_and_reloads(tmp_path: Path) -> None:
    a = tls.ensure_self_signed(tmp_path / "a", "mail.example.org")
    b = tls.ensure_self_signed(tmp_path / "b", "mail.example.org")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copyfile(a[0], cert)
    shutil.copyfile(a[1], key)
    sc = tls.ServerCertificate(cert, key)
    assert not sc.changed()
    shutil.copyfile(b[0], cert)
    shutil.copyfile(b[1], key)
    os.utime(cert, ns=(1, 10**18))  # a renewal within the same clock tick still counts
    assert sc.changed()
    context = sc.context
    sc.reload()
    assert sc.context is context and not sc.changed()


def test_unusable_pair_is_refused_and_kept_out(tmp_path: Path) -> None:
    a = tls.ensure_self_signed(tmp_path / "a", "mail.example.org")
    b = tls.ensure_self_signed(tmp_path / "b", "mail.example.org")
    sc = tls.ServerCertificate(*a)
    sc.key = b[1]
    with pytest.raises(tls.CertificateError, match="does not match"):
        sc.reload()
    with pytest.raises(tls.CertificateError, match="does not exist"):
        tls.server_context(tmp_path / "missing.pem", a[1])
