"""The admin command line, run as a real subprocess (`python -m mailhouse`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(cfgfile: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAILHOUSE_CONFIG=str(cfgfile))
    return subprocess.run(
        [sys.executable, "-m", "mailhouse", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def cfgfile(tmp_path: Path) -> Path:
    p = tmp_path / "mailhouse.toml"
    p.write_text(f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n')
    assert run(p, "setup").returncode == 0
    return p


def test_domain_user_alias_lifecycle(cfgfile: Path) -> None:
    assert run(cfgfile, "domain", "add", "Example.ORG").returncode == 0
    dup = run(cfgfile, "domain", "add", "example.org")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert run(cfgfile, "domain", "list").stdout.split() == ["example.org"]

    r = run(cfgfile, "user", "add", "alice@example.org", "--password-stdin", stdin="correct horse battery\n")
    assert r.returncode == 0, r.stderr
    assert "correct horse" not in r.stdout + r.stderr
    bad = run(cfgfile, "user", "add", "bob@unknown.test", "--password-stdin", stdin="password123\n")
    assert bad.returncode == 1 and "not hosted" in bad.stderr
    inval = run(cfgfile, "user", "add", "not an address", "--password-stdin", stdin="password123\n")
    assert inval.returncode == 1 and "invalid address" in inval.stderr
    dupu = run(cfgfile, "user", "add", "alice@example.org", "--password-stdin", stdin="password123\n")
    assert dupu.returncode == 1 and "already exists" in dupu.stderr
    assert "alice@example.org" in run(cfgfile, "user", "list").stdout

    assert run(cfgfile, "alias", "add", "sales@example.org", "alice@example.org").returncode == 0
    assert run(cfgfile, "alias", "add", "@example.org", "alice@example.org").returncode == 0
    listing = run(cfgfile, "alias", "list").stdout
    assert "sales@example.org\talice@example.org" in listing and "@example.org\talice@example.org" in listing
    assert run(cfgfile, "alias", "remove", "sales@example.org").returncode == 0
    assert "sales@" not in run(cfgfile, "alias", "list").stdout

    assert (
        run(
            cfgfile, "user", "passwd", "alice@example.org", "--password-stdin", stdin="another pass 2\n"
        ).returncode
        == 0
    )
    busy = run(cfgfile, "domain", "remove", "example.org")
    assert busy.returncode == 1 and "account" in busy.stderr
    assert run(cfgfile, "user", "remove", "alice@example.org").returncode == 0
    assert run(cfgfile, "user", "list").stdout.strip() == ""


def test_password_never_from_argv(cfgfile: Path) -> None:
    run(cfgfile, "domain", "add", "example.org")
    r = run(cfgfile, "user", "add", "alice@example.org", "hunter22hunter")
    assert r.returncode == 2  # argparse: unrecognised argument


def test_quickstart_prints_password_and_settings(cfgfile: Path) -> None:
    r = run(cfgfile, "quickstart", "me@example.net")
    assert r.returncode == 0, r.stderr
    assert "Password:" in r.stdout and "IMAP:" in r.stdout and "2993" in r.stdout and "2465" in r.stdout
    assert "example.net" in run(cfgfile, "domain", "list").stdout


def test_dns_records(cfgfile: Path) -> None:
    run(cfgfile, "domain", "add", "example.org")
    out = run(cfgfile, "dns", "example.org").stdout
    assert "example.org. 3600 IN MX 10 mail.example.org." in out
    assert "v=spf1 mx -all" in out
    assert "mailhouser._domainkey.example.org. 3600 IN TXT" in out and "k=rsa" in out
    assert "mailhousee._domainkey.example.org" in out and "k=ed25519" in out
    assert "_dmarc.example.org" in out and "_submissions._tcp.example.org" in out
    # issue 15 §7: advised because Mailhouse serves the policy and reads the reports
    assert "rua=mailto:postmaster@example.org" in out and "_smtp._tls.example.org. 3600 IN TXT" in out
    assert "_mta-sts.example.org. 3600 IN TXT" in out and "mta-sts.example.org. 3600 IN CNAME" in out


def test_dns_advises_only_what_is_served(tmp_path: Path) -> None:
    p = tmp_path / "mailhouse.toml"
    p.write_text(
        f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n'
        '[mta_sts]\npublish = "off"\n[reports]\nenabled = false\n'
    )
    run(p, "setup")
    run(p, "domain", "add", "example.org")
    out = run(p, "dns", "example.org").stdout
    assert "_dmarc.example.org" in out and "v=DMARC1; p=quarantine" in out
    assert "rua=" not in out and "_smtp._tls" not in out and "mta-sts" not in out


def test_dns_check_against_live_dns(tmp_path: Path) -> None:
    from tests.peers.dns import DNSServer

    with DNSServer(
        mx={"example.org": [(10, "mail.example.org")]},
        a={"mail.example.org": ["127.0.0.2"]},
        txt={"example.org": ["v=spf1 a:mail.example.org -all"]},
    ) as dns:
        p = tmp_path / "mailhouse.toml"
        p.write_text(
            f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n'
            f'[dns]\nnameservers = ["{dns.nameserver}"]\n'
        )
        run(p, "setup")
        run(p, "domain", "add", "example.org")
        r = run(p, "dns", "example.org", "--check")
    assert r.returncode == 1, r.stdout + r.stderr  # DKIM and DMARC are not published
    lines = r.stdout.splitlines()
    assert any(x.startswith("ok") and "MX" in x and "example.org:" in x for x in lines), r.stdout
    assert any(x.startswith("ok") and "SPF passes for 127.0.0.2" in x for x in lines), r.stdout
    assert any(x.startswith("missing") and "_dmarc.example.org" in x for x in lines), r.stdout
    assert any(x.startswith("missing") and "._domainkey.example.org" in x for x in lines), r.stdout
    assert "required record(s) missing or different" in lines[-1]


def test_bad_config_exits_nonzero(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[listen]\nsmtp = "x"\n')
    r = run(p, "domain", "list")
    assert r.returncode == 2 and str(p) in r.stderr and "listen.smtp" in r.stderr


def test_only_setup_and_quickstart_create_a_store(tmp_path: Path) -> None:
    p = tmp_path / "mailhouse.toml"
    p.write_text(f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n')
    r = run(p, "user", "list")
    assert r.returncode == 1 and "no Mailhouse store" in r.stderr and "mailhouse setup" in r.stderr
    assert not (tmp_path / "data" / "mailhouse.db").exists()  # nothing made behind the operator's back
    r = run(p, "setup")
    assert r.returncode == 0 and "Created" in r.stdout
    assert run(p, "setup").stdout.startswith("Found")
    assert run(p, "user", "list").returncode == 0


def test_config_found_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "mailhouse.toml").write_text(
        f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "d"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "MAILHOUSE_CONFIG"}
    r = subprocess.run(
        [sys.executable, "-m", "mailhouse", "setup"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "mailhouse.db").exists()


def test_hostname_warnings_and_host_records(tmp_path: Path) -> None:
    p = tmp_path / "mailhouse.toml"
    p.write_text(
        f'hostname = "localhost"\ndata_dir = "{tmp_path / "data"}"\n[queue]\nsource_address = "192.0.2.10"\n'
    )
    r = run(p, "quickstart", "me@example.org")
    assert r.returncode == 0 and "WARNING" in r.stderr and "'localhost'" in r.stderr
    assert "Next steps:" in r.stdout and "mailhouse serve" in r.stdout  # nothing listens: not running
    out = run(p, "dns", "example.org")
    assert "WARNING" in out.stderr
    assert "localhost. 3600 IN A 192.0.2.10" in out.stdout
    assert "10.2.0.192.in-addr.arpa. 3600 IN PTR localhost." in out.stdout
    p.write_text(f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n')
    out = run(p, "dns", "example.org")
    assert "WARNING" not in out.stderr and "set [queue] source_address" in out.stdout


def test_quickstart_knows_a_running_server(tmp_path: Path) -> None:
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        p = tmp_path / "mailhouse.toml"
        p.write_text(
            f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n[listen]\nsmtp = "127.0.0.1:{port}"\n'
        )
        r = run(p, "quickstart", "me@example.org")
    assert r.returncode == 0 and "already running" in r.stdout, r.stdout
