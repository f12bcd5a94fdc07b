"""ACME (issue 16 §2) end to end against Debian's pebble: Mailhouse with `[acme]` registers, answers
the HTTP-01 challenges on its web listener, serves pebble's certificate on imaps and https, and a
restart with a valid certificate in the store does not order again."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509

from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer
from tests.peers.pebble import Pebble
from tests.peers.ports import free_port

HOST = "mail.example.org"
NAMES = {HOST, "mta-sts.example.org", "autoconfig.example.org"}  # the derived default for example.org


def _served(addr: tuple[str, int], name: str = HOST) -> x509.Certificate:
    ctx = ssl._create_unverified_context()
    with ctx.wrap_socket(socket.create_connection(addr, timeout=20), server_hostname=name) as s:
        der = s.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def _sans(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def test_certificate_ordered_from_pebble_served_and_not_reordered(tmp_path: Path) -> None:
    http_port = free_port()
    dns = DNSServer(a={n: ["127.0.0.1"] for n in NAMES}).start()
    pebble = Pebble(http_port=http_port, dnsserver=dns.nameserver).start()
    (tmp_path / "mh").mkdir()
    extra = (
        f'[acme]\ndirectory = "{pebble.directory}"\nemail = "postmaster@example.org"\n'
        f'ca_file = "{pebble.ca_file}"\n'
    )
    mh = MailhouseProcess(
        tmp_path / "mh", services=("http", "imaps", "https"), ports={"http": http_port}, extra=extra
    )
    try:
        mh.add_domain("example.org")
        mh.start()
        assert mh.wait_log("ACME: certificate for", timeout=90), mh.logtext()[-3000:] + pebble.log()
        assert "ACME: certificate installed" in mh.logtext()
        intermediate = x509.load_pem_x509_certificate(pebble.intermediate_pem().encode())
        for svc in ("imaps", "https"):
            cert = _served(mh.addr(svc))
            assert cert.issuer == intermediate.subject, svc
            assert _sans(cert) == NAMES, svc
        first = _served(mh.addr("imaps")).serial_number
        # the challenge tokens are gone once the order is done; an unknown token is 404, not a redirect
        url = f"http://127.0.0.1:{http_port}/.well-known/acme-challenge/no-such-token"
        try:
            urllib.request.urlopen(url, timeout=10)
            raise AssertionError("an unknown token was answered")
        except urllib.error.HTTPError as e:
            assert e.code == 404
        mh.stop()

        mh.start()  # a second run: the certificate in the store is valid, so no new order
        assert mh.wait_log("renewal due", timeout=60), mh.logtext()[-3000:]
        assert mh.logtext().count("issued, valid until") == 1
        assert _served(mh.addr("https")).serial_number == first
    finally:
        mh.stop()
        pebble.stop()
        dns.stop()
