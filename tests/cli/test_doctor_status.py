"""`mailhouse doctor` and `mailhouse status` against real parts: a running Mailhouse, dnsmasq
serving the domain's records and a DNS block list, certificates from a test CA."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mailhouse import config as config_mod
from mailhouse.mailauth.dnsrecords import advice
from mailhouse.store import open_store
from tests.cli.test_admin_cli import run
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dns import DNSServer
from tests.smtpclient.testca import TestCA


def test_status_shows_the_running_node(tmp_path: Path) -> None:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", services=("smtp", "imap"))
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    try:
        assert mh.wait_log(" ready (pid ", timeout=30)
        out = run(mh.cfgfile, "status").stdout
        assert "Nodes serving: 1" in out and "mail.example.org" in out and "up " in out, out
        assert out.count(" listening") == 2 and "not listening" not in out
        assert "Queue: 0 message(s)" in out and "1 domain(s), 1 account(s)" in out
    finally:
        mh.stop()
    out = run(mh.cfgfile, "status").stdout
    assert "Nodes serving: 0" in out and "not listening" in out  # a clean stop removes the heartbeat


def _records(cfgfile: Path) -> dict[str, list[str]]:
    cfg = config_mod.load(str(cfgfile))

    async def go() -> dict[str, list[str]]:
        store = open_store(cfg.store, cfg.data_dir)
        await store.open()
        try:
            want = advice(cfg, "example.org", await store.get_dkim_keys("example.org"))
        finally:
            await store.close()
        txt: dict[str, list[str]] = {}
        for r in want:
            if r.type == "TXT":
                txt.setdefault(r.name, []).append(r.value)
        return txt

    return asyncio.run(go())


def test_doctor_names_what_is_wrong_then_passes(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("mail.example.org")  # without the mta-sts./autoconfig. names
    with DNSServer(
        mx={"example.org": [(10, "mail.example.org")]},
        a={"mail.example.org": ["127.0.0.2"], "2.0.0.127.bl.example.test": ["127.0.0.2"]},  # listed
        txt={"example.org": ["v=spf1 mx -all"]},
    ) as dns:
        cfgfile = tmp_path / "mailhouse.toml"
        base = (
            f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n'
            f'[listen]\nsmtp = "127.0.0.1:1"\n[dns]\nnameservers = ["{dns.nameserver}"]\n'
            f'[queue]\nsource_address = "127.0.0.2"\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
        )
        cfgfile.write_text(base + '[spam]\ndnsbl = ["bl.example.test"]\n')
        assert run(cfgfile, "quickstart", "me@example.org").returncode == 0
        os.chmod(key, 0o644)
        r = run(cfgfile, "doctor")
        lines = r.stdout.splitlines()
        assert r.returncode == 1, r.stdout
        assert any(x.startswith("FAIL  tls key") for x in lines), r.stdout
        assert any(
            x.startswith("FAIL  blocklist") and "127.0.0.2 is listed on bl.example.test" in x for x in lines
        )
        assert any(x.startswith("FAIL  dns example.org") and "_dmarc.example.org" in x for x in lines), (
            r.stdout
        )
        assert any(x.startswith("warn  certificate names") and "mta-sts.example.org" in x for x in lines)
        assert any(x.startswith("warn  listener smtp") for x in lines)  # nothing serves port 1
        assert any(x.startswith("ok    certificate:") for x in lines)
        assert any(x.startswith("ok    store") for x in lines)

        # fixed: key private, records published, not listed
        os.chmod(key, 0o640)
        dns.update(
            mx={"example.org": [(10, "mail.example.org")]},
            a={"mail.example.org": ["127.0.0.2"]},
            txt={**_records(cfgfile), "example.org": ["v=spf1 mx -all"]},
        )
        r = run(cfgfile, "doctor")
        assert r.returncode == 0, r.stdout
        assert not any(x.startswith("FAIL") for x in r.stdout.splitlines()), r.stdout
