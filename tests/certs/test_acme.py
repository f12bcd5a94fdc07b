"""ACME (issue 16 §2) end to end against Debian's pebble: Mailhouse with `[acme]` registers, answers
the HTTP-01 challenges on its web listener, serves pebble's certificate on imaps and https, and a
restart with a valid certificate in the store does not order again."""

from __future__ import annotations

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
from mailhouse.certs import acme
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
    """An order that fails (nothing listens at the directory) is retried after RETRY_BASE at the
    earliest; a check before then orders nothing (no second lease event)."""
    cfg, cert = _node(tmp_path, "a", {"acme": {"directory": "https://127.0.0.1:9/dir"}})
    cfg.acme_names = ["other.example.org"]  # the self-signed certificate lacks it: an order is due
    store = open_store(cfg.store, cfg.data_dir)
    await store.open()
    try:
        manager = acme.AcmeManager(cfg, store, cert)
        assert await manager.step() >= acme.RETRY_BASE
        assert await manager.ensure() is acme.Outcome.WAITING
        assert await store.events_within(acme.LEASE_KEY, time.time(), acme.LEASE_SECONDS) == 1
        # the same back-off (plus the check jitter of step()), not a new failure
        assert 0 < await manager.step() <= 1.25 * acme.RETRY_BASE + 0.02 * acme.CHECK_MAX
        assert await store.events_within(acme.LEASE_KEY, time.time(), acme.LEASE_SECONDS) == 1
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
    ):
        with pytest.raises(config_mod.ConfigError, match=key):
            config_mod.from_dict({"acme": bad})
