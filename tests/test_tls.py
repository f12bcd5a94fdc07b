"""tls.py: the reloadable server certificate (issue 16 §3) and its one-line errors."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import threading
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
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copyfile(a[0], cert)
    shutil.copyfile(a[1], key)
    sc = tls.ServerCertificate(cert, key)
    shutil.copyfile(b[1], key)  # a renewal half done: the new key, the old certificate
    with pytest.raises(tls.CertificateError, match="does not match"):
        sc.reload()
    with pytest.raises(tls.CertificateError, match="does not exist"):
        tls.server_context(tmp_path / "missing.pem", a[1])


def _served(ctx: ssl.SSLContext, name: str | None) -> bytes:
    """The certificate a handshake with server context CTX presents to a client asking for NAME."""
    import ssl

    a, b = socket.socketpair()
    got: list[bytes] = []

    def server() -> None:
        with ctx.wrap_socket(a, server_side=True) as s:
            s.recv(1)

    t = threading.Thread(target=server)
    t.start()
    client = ssl._create_unverified_context()
    with client.wrap_socket(b, server_hostname=name) as c:
        got.append(c.getpeercert(binary_form=True) or b"")
        c.sendall(b"x")
    t.join(10)
    return got[0]


def test_sni_picks_the_certificate_that_covers_the_name(tmp_path: Path) -> None:
    from tests.smtpclient.testca import TestCA

    ca = TestCA(tmp_path / "ca")
    main = ca.issue("mail.example.org")
    other = ca.issue("mail.example.net", "*.example.net")
    sc = tls.ServerCertificate(*main, sni=[other])

    def der(pem: Path) -> bytes:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER)

    assert _served(sc.context, "mail.example.net") == der(other[0])
    assert _served(sc.context, "autoconfig.example.net") == der(other[0])  # the wildcard
    assert _served(sc.context, "mail.example.org") == der(main[0])
    assert _served(sc.context, "unknown.test") == der(main[0])  # no match: the main one
    assert _served(sc.context, None) == der(main[0])  # no SNI at all
    assert tls.covers(["*.example.net"], "a.example.net") and not tls.covers(
        ["*.example.net"], "a.b.example.net"
    )
