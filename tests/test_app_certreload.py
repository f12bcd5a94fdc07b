"""Certificates reload without a restart (issue 16 §3): after SIGHUP every listener hands new
handshakes the new certificate while an established connection keeps its own; an unusable
pair is refused and the running certificate kept. The file watch itself: tests/test_tls.py."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
from pathlib import Path

from mailhouse import tls
from tests.mailhouse_proc import MailhouseProcess


def _peer_cert(addr: tuple[str, int]) -> tuple[bytes, ssl.SSLSocket]:
    ctx = ssl._create_unverified_context()
    s = ctx.wrap_socket(socket.create_connection(addr, timeout=20), server_hostname="mail.example.org")
    der = s.getpeercert(binary_form=True)
    assert der
    return der, s


def _install(src: tuple[Path, Path], live: tuple[Path, Path]) -> None:
    for a, b in zip(src, live, strict=True):
        tmp = b.with_suffix(".new")
        shutil.copyfile(a, tmp)
        tmp.replace(b)  # as certbot's deploy hooks and `install` do: never a half-written file


def test_sighup_reloads_the_certificate_on_every_listener(tmp_path: Path) -> None:
    a = tls.ensure_self_signed(tmp_path / "a", "mail.example.org")
    b = tls.ensure_self_signed(tmp_path / "b", "mail.example.org")
    live = (tmp_path / "live-cert.pem", tmp_path / "live-key.pem")
    _install(a, live)
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(
        tmp_path / "mh",
        services=("imaps", "submissions", "pop3s"),
        extra=f'[tls]\ncert = "{live[0]}"\nkey = "{live[1]}"\n',
    )
    mh.start()
    try:
        der_a, old = _peer_cert(mh.addr("imaps"))
        assert old.recv(4096).startswith(b"* OK")
        _install(b, live)
        assert mh.proc is not None
        mh.proc.send_signal(signal.SIGHUP)
        assert mh.wait_log("TLS certificate reloaded", timeout=20), mh.logtext()[-2000:]
        for svc in ("imaps", "submissions", "pop3s"):
            der, s = _peer_cert(mh.addr(svc))
            s.close()
            assert der != der_a, svc
        assert old.getpeercert(binary_form=True) == der_a  # established: untouched, still serving
        old.sendall(b"a NOOP\r\n")
        assert b"a OK" in old.recv(4096)
        old.close()

        # a broken pair (key of A with certificate B) is refused; B stays in service
        shutil.copyfile(a[1], live[1])
        der_b, s = _peer_cert(mh.addr("imaps"))
        s.close()
        mh.proc.send_signal(signal.SIGHUP)
        assert mh.wait_log("certificate not reloaded", timeout=20), mh.logtext()[-2000:]
        der, s = _peer_cert(mh.addr("imaps"))
        s.close()
        assert der == der_b
    finally:
        mh.stop()


def _cert_for(addr: tuple[str, int], name: str) -> bytes:
    ctx = ssl._create_unverified_context()
    with ctx.wrap_socket(socket.create_connection(addr, timeout=20), server_hostname=name) as s:
        der = s.getpeercert(binary_form=True)
    assert der
    return der


def test_sni_certificates_served_and_reloaded(tmp_path: Path) -> None:
    from tests.smtpclient.testca import TestCA

    ca = TestCA(tmp_path / "ca")
    main = ca.issue("mail.example.org")
    net_a = ca.issue("mail.example.net")
    net_b = ca.issue("mail.example.net", "www.example.net")  # the renewal (other files)
    live = (tmp_path / "net-cert.pem", tmp_path / "net-key.pem")
    _install(net_a, live)
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(
        tmp_path / "mh",
        services=("imaps", "https"),
        extra=(
            f'[tls]\ncert = "{main[0]}"\nkey = "{main[1]}"\n'
            f'sni = [{{ cert = "{live[0]}", key = "{live[1]}" }}]\n'
        ),
    )
    mh.start()
    try:
        for svc in ("imaps", "https"):
            assert _cert_for(mh.addr(svc), "mail.example.net") != _cert_for(mh.addr(svc), "mail.example.org")
        before = _cert_for(mh.addr("imaps"), "mail.example.net")
        _install(net_b, live)  # the second domain's certificate renewed
        assert mh.proc is not None
        mh.proc.send_signal(signal.SIGHUP)
        assert mh.wait_log("TLS certificate reloaded", timeout=20), mh.logtext()[-2000:]
        after = _cert_for(mh.addr("imaps"), "mail.example.net")
        assert after != before and after != _cert_for(mh.addr("imaps"), "mail.example.org")
    finally:
        mh.stop()
