"""ACME (issue 16 §2) end to end against Debian's pebble: Mailhouse with `[acme]` registers, answers
the HTTP-01 challenges on its web listener, serves pebble's certificate on imaps and https, and a
restart with a valid certificate in the store does not order again."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from mailhouse import config as config_mod
from mailhouse import tls
from mailhouse.certs import TLSALPN01_PREFIX, acme, challenge_type, tlsalpn
from mailhouse.store import open_store
from tests.mailhouse_proc import MailhouseProcess
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


def _ordered(mh: MailhouseProcess, pebble: Pebble) -> x509.Certificate:
    """Start MH hosting example.org until its first ACME pass logs; PEBBLE's intermediate CA."""
    mh.add_domain("example.org")
    mh.start()
    assert mh.wait_log("ACME: certificate for", timeout=90), mh.logtext()[-3000:] + pebble.log()
    return x509.load_pem_x509_certificate(pebble.intermediate_pem().encode())


@pytest.fixture
def pebble(tmp_path: Path, dns_server_factory: Any, pebble_factory: Any) -> Pebble:
    """pebble validating HTTP-01 on a free loopback port, NAMES resolving to 127.0.0.1."""
    dns = dns_server_factory(a={n: ["127.0.0.1"] for n in NAMES})
    (tmp_path / "mh").mkdir()
    return pebble_factory(http_port=free_port(), dnsserver=dns.nameserver)


def test_certificate_ordered_from_pebble_served_and_not_reordered(tmp_path: Path, pebble: Pebble) -> None:
    http_port = pebble.http_port
    extra = (
        f'[acme]\ndirectory = "{pebble.directory}"\nemail = "postmaster@example.org"\n'
        f'ca_file = "{pebble.ca_file}"\n'
    )
    mh = MailhouseProcess(
        tmp_path / "mh", services=("http", "imaps", "https"), ports={"http": http_port}, extra=extra
    )
    try:
        intermediate = _ordered(mh, pebble)
        assert "ACME: certificate installed" in mh.logtext()
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


def _node(
    tmp_path: Path, name: str, extra: dict[str, object]
) -> tuple[config_mod.Config, tls.ServerCertificate]:
    """A node's config on the shared store at tmp_path/mh.db with its own certificate files."""
    cfg = config_mod.from_dict(
        {
            "hostname": HOST,
            "data_dir": str(tmp_path / name),
            "store": {"url": f"sqlite:///{tmp_path / 'mh.db'}"},
        }
        | extra
    )
    return cfg, tls.ServerCertificate(*tls.ensure_self_signed(cfg.data_dir, HOST))


async def test_two_nodes_one_order_same_certificate(tmp_path: Path, pebble: Pebble) -> None:
    """The second node on the store orders nothing: it installs the first node's certificate."""
    http_port = pebble.http_port
    # the web node answering the challenges shares the store with A and B
    web = MailhouseProcess(
        tmp_path / "mh",
        services=("http",),
        ports={"http": http_port},
        store_url=f"sqlite:///{tmp_path / 'mh.db'}",
    )
    acme_table = {"directory": pebble.directory, "ca_file": str(pebble.ca_file), "names": sorted(NAMES)}
    cfg_a, cert_a = _node(tmp_path, "a", {"acme": acme_table})
    cfg_b, cert_b = _node(tmp_path, "b", {"acme": acme_table})
    store = open_store(cfg_a.store, cfg_a.data_dir)
    await store.open()
    try:
        web.start()
        assert await acme.AcmeManager(cfg_a, store, cert_a).ensure() is acme.Outcome.ORDERED
        assert await acme.AcmeManager(cfg_b, store, cert_b).ensure() is acme.Outcome.CURRENT
        assert cert_a.cert.read_text() == cert_b.cert.read_text()
        assert cert_a.key.read_text() == cert_b.key.read_text()
        assert _sans(x509.load_pem_x509_certificate(cert_b.cert.read_bytes())) == NAMES
        assert not await store.list_marks(acme.TOKEN_PREFIX, 0.0)  # challenges withdrawn
    finally:
        await store.close()
        web.stop()


async def test_renewal_due_waits_for_the_lease_holder(
    tmp_path: Path, store_backend: str, request: pytest.FixtureRequest
) -> None:
    """Past two thirds of its lifetime a certificate is renewed, by the node holding the lease only
    (the lease is a counted event: one transaction on either backend)."""
    extra: dict[str, object] = {"acme": {"directory": "https://127.0.0.1:9/dir"}}
    if store_backend == "postgres":
        extra["store"] = {"url": request.getfixturevalue("postgres_db")}
    cfg, cert = _node(tmp_path, "a", extra)
    chain, key = cert.cert.read_text(), cert.key.read_text()
    issued = acme.Issued.from_pem(chain, key)
    assert issued.renew_at == pytest.approx(
        issued.not_before + (issued.not_after - issued.not_before) * 2 / 3
    )
    store = open_store(cfg.store, cfg.data_dir)
    await store.open()
    try:
        await store.set_mark(acme.CERT_MARK, json.dumps({"chain": chain, "key": key}), issued.not_after)
        manager = acme.AcmeManager(cfg, store, cert)
        assert await manager.ensure() is acme.Outcome.CURRENT  # names (the host name) covered, not due
        cfg.acme_names = ["other.example.org"]  # a name it lacks: due now, but another node ordering
        await store.count_event(acme.LEASE_KEY, time.time(), acme.LEASE_SECONDS)
        assert await manager.ensure() is acme.Outcome.WAITING
    finally:
        await store.close()


async def test_failed_order_backs_off(tmp_path: Path) -> None:
    """An order that fails (nothing listens at the directory) releases the lease and is retried after
    RETRY_BASE at the earliest; a check before then orders nothing (takes no lease)."""
    cfg, cert = _node(tmp_path, "a", {"acme": {"directory": "https://127.0.0.1:9/dir"}})
    cfg.acme_names = ["other.example.org"]  # the self-signed certificate lacks it: an order is due
    store = open_store(cfg.store, cfg.data_dir)
    await store.open()
    try:
        manager = acme.AcmeManager(cfg, store, cert)
        assert await manager.step() >= acme.RETRY_BASE
        # the failed order released its lease: another node may try (with its own back-off)
        assert await store.events_within(acme.LEASE_KEY, time.time(), acme.LEASE_SECONDS) == 0
        assert await manager.ensure() is acme.Outcome.WAITING
        # the same back-off (plus the check jitter of step()), not a new failure, no new lease
        assert 0 < await manager.step() <= 1.25 * acme.RETRY_BASE + 0.02 * acme.CHECK_MAX
        assert await store.events_within(acme.LEASE_KEY, time.time(), acme.LEASE_SECONDS) == 0
    finally:
        await store.close()


def test_acme_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = config_mod.from_dict(
        {
            "acme": {
                "directory": "https://acme.example/dir",
                "email": "a@example.org",
                "names": ["Mail.Example.org."],
                "ca_file": str(ca),
            }
        }
    )
    assert (cfg.acme_directory, cfg.acme_email, cfg.acme_names, cfg.acme_ca_file) == (
        "https://acme.example/dir",
        "a@example.org",
        ["mail.example.org"],
        ca,
    )
    for bad, key in (
        ({"directory": "http://acme.example/dir"}, "acme.directory"),
        ({"email": "nobody"}, "acme.email"),
        ({"ca_file": str(tmp_path / "missing.pem")}, "acme.ca_file"),
        ({"renew": 1}, "acme"),
        ({"challenge": "dns-01"}, "acme.challenge"),
    ):
        with pytest.raises(config_mod.ConfigError, match=key):
            config_mod.from_dict({"acme": bad})


# ---------------------------------------------------------------- TLS-ALPN-01 (RFC 8737)


def _alpn_handshake(
    addr: tuple[str, int], name: str, alpn: list[str]
) -> tuple[x509.Certificate, str | None, bytes]:
    """Handshake with SNI NAME offering ALPN; the certificate served, the protocol chosen, and what
    the server sends next (b"" when it closes)."""
    ctx = ssl._create_unverified_context()
    ctx.set_alpn_protocols(alpn)
    with ctx.wrap_socket(socket.create_connection(addr, timeout=20), server_hostname=name) as s:
        der = s.getpeercert(binary_form=True)
        chosen = s.selected_alpn_protocol()
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\n\r\n")
            rest = s.recv(100)
        except (ssl.SSLError, OSError):
            rest = b""
    assert der
    return x509.load_der_x509_certificate(der), chosen, rest


def test_validation_certificate_rfc8737() -> None:
    """§3: one dNSName, the critical id-pe-acmeIdentifier holding the DER OCTET STRING of the
    SHA-256 of the key authorization."""
    cert_pem, key_pem = tlsalpn.validation_certificate("mail.example.org", "tok.thumb")
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert _sans(cert) == {"mail.example.org"}
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"))
    assert ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(b"tok.thumb").digest()
    assert "PRIVATE KEY" in key_pem


def test_https_listener_answers_tls_alpn_from_the_store(tmp_path: Path) -> None:
    """A validation certificate stored by any node is served on this node's https listener to a
    ClientHello with its SNI and ALPN acme-tls/1, and the connection is closed after the
    handshake; other names and ALPNs get the node's certificate and HTTP."""
    db = tmp_path / "mh.db"
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(
        tmp_path / "mh",
        services=("https",),
        store_url=f"sqlite:///{db}",
        extra='[acme]\ndirectory = "https://127.0.0.1:9/dir"\nnames = ["other.example.org"]\n',
    )
    cert_pem, key_pem = tlsalpn.validation_certificate("mta-sts.example.org", "tok.thumb")

    async def publish() -> None:
        store = open_store(f"sqlite:///{db}", tmp_path / "mh" / "data")
        await store.open()
        try:
            value = json.dumps({"cert": cert_pem, "key": key_pem})
            await store.set_mark(TLSALPN01_PREFIX + "mta-sts.example.org", value, time.time() + 600)
        finally:
            await store.close()

    try:
        mh.start()
        assert mh.wait_log(" ready (pid ", timeout=30), mh.logtext()[-3000:]
        asyncio.run(publish())
        want = x509.load_pem_x509_certificate(cert_pem.encode())
        deadline = time.monotonic() + 30
        while True:  # the listener looks at the store every VALIDATION_POLL seconds
            got, chosen, rest = _alpn_handshake(mh.addr("https"), "mta-sts.example.org", ["acme-tls/1"])
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got == want, mh.logtext()[-3000:]
        assert chosen == "acme-tls/1"
        assert rest == b""  # §3: closed after the handshake, no HTTP
        main, chosen, rest = _alpn_handshake(mh.addr("https"), HOST, ["acme-tls/1", "http/1.1"])
        assert main != want and chosen is None and rest.startswith(b"HTTP/1.1 ")
    finally:
        mh.stop()


def test_certificate_ordered_over_tls_alpn_01(
    tmp_path: Path, dns_server_factory: Any, pebble_factory: Any
) -> None:
    """No http listener: the challenge is tls-alpn-01, which pebble validates on the https port."""
    dns = dns_server_factory(a={n: ["127.0.0.1"] for n in NAMES})
    https_port = free_port()
    pebble = pebble_factory(http_port=free_port(), tls_port=https_port, dnsserver=dns.nameserver)
    (tmp_path / "mh").mkdir()
    extra = f'[acme]\ndirectory = "{pebble.directory}"\nca_file = "{pebble.ca_file}"\n'
    mh = MailhouseProcess(
        tmp_path / "mh", services=("https", "imaps"), ports={"https": https_port}, extra=extra
    )
    try:
        intermediate = _ordered(mh, pebble)
        assert "(tls-alpn-01 challenges)" in mh.logtext()
        cert = _served(mh.addr("imaps"))  # the mail listeners never saw a validation certificate
        assert cert.issuer == intermediate.subject and _sans(cert) == NAMES
        deadline = time.monotonic() + 30
        while (cert := _served(mh.addr("https"))).issuer != intermediate.subject:
            assert time.monotonic() < deadline  # the withdrawn validation certificates go within a poll
            time.sleep(0.2)
        assert _sans(cert) == NAMES
    finally:
        mh.stop()


async def test_lease_renewed_while_an_order_runs_then_released(
    tmp_path: Path, store_backend: str, request: pytest.FixtureRequest
) -> None:
    """An order outlasting LEASE_SECONDS (a slow CA) keeps its lease by heartbeat: a second manager
    on the store waits instead of ordering too; when the order is done the lease is released and
    the second manager installs the certificate. Time is the managers' clock, moved by the test."""
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    extra: dict[str, object] = {"acme": {"directory": "https://127.0.0.1:9/dir"}}
    if store_backend == "postgres":
        extra["store"] = {"url": request.getfixturevalue("postgres_db")}
    cfg_a, cert_a = _node(tmp_path, "a", extra)
    cfg_b, cert_b = _node(tmp_path, "b", extra)
    for cfg in (cfg_a, cfg_b):
        cfg.acme_names = ["other.example.org"]  # the self-signed certificates lack it: an order is due
    new = tls.ensure_self_signed(tmp_path / "new", "other.example.org")
    issued = acme.Issued.from_pem(new[0].read_text(), new[1].read_text())
    store = open_store(cfg_a.store, cfg_a.data_dir)
    await store.open()
    ca_answers = asyncio.Event()

    async def slow_order(names: list[str]) -> acme.Issued:
        await ca_answers.wait()
        return issued

    async def no_order(names: list[str]) -> acme.Issued:
        raise AssertionError("a second node ordered while the first one's order ran")

    async def beat() -> None:  # a lease event within the last second of the (moved) clock
        while not await store.events_within(acme.LEASE_KEY, clock(), 1.0):
            await asyncio.sleep(0.01)

    try:
        a = acme.AcmeManager(cfg_a, store, cert_a, clock=clock, heartbeat=0.02)
        b = acme.AcmeManager(cfg_b, store, cert_b, clock=clock, heartbeat=0.02)
        a._order = slow_order  # type: ignore[method-assign]
        b._order = no_order  # type: ignore[method-assign]
        ordering = asyncio.ensure_future(a.ensure())
        await asyncio.wait_for(beat(), 30)  # A holds the lease
        for _ in range(3):  # 1.5 lease periods pass while A's order runs; A renews the lease
            offset[0] += acme.LEASE_SECONDS / 2
            await asyncio.wait_for(beat(), 30)
        assert await b.ensure() is acme.Outcome.WAITING
        ca_answers.set()
        assert await ordering is acme.Outcome.ORDERED
        assert await store.events_within(acme.LEASE_KEY, clock(), acme.LEASE_SECONDS) == 0  # released
        assert await b.ensure() is acme.Outcome.CURRENT
        assert cert_b.cert.read_text() == issued.chain
    finally:
        await store.close()


def test_challenge_type_default_and_setting() -> None:
    """http-01 with an http listener, else tls-alpn-01 with an https one; `challenge` overrides."""
    both = {"listen": {"http": "127.0.0.1:8080", "https": "127.0.0.1:8443"}}
    https = {"listen": {"https": "127.0.0.1:8443", "imaps": "127.0.0.1:9993"}}
    assert challenge_type(config_mod.from_dict(both)) == "http-01"
    assert challenge_type(config_mod.from_dict(https)) == "tls-alpn-01"
    assert (
        challenge_type(config_mod.from_dict(both | {"acme": {"challenge": "tls-alpn-01"}})) == "tls-alpn-01"
    )
