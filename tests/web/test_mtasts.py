"""The MTA-STS policy on the web face (RFC 8461 §3.3), through a real Mailhouse."""

from __future__ import annotations

import subprocess
import sys

import httpx

from mailhouse.proto.mtasts import Mode, parse_policy, parse_txt, policy_id
from tests.web.conftest import base_url


def _get(mh, host: str) -> httpx.Response:
    return httpx.get(base_url(mh) + "/.well-known/mta-sts.txt", headers={"Host": host}, timeout=10)


def _advised_id(mh) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mailhouse", "--config", str(mh.cfgfile), "dns", "example.org"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("_mta-sts.example.org."))
    pid = parse_txt([line.split(" TXT ", 1)[1].strip('"')])
    assert pid is not None
    return pid


def test_policy_served_for_hosted_domain_with_the_advised_id(web_mh) -> None:
    r = _get(web_mh, "mta-sts.example.org")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    pid = _advised_id(web_mh)
    p = parse_policy(r.text, "example.org", pid, 0.0)
    assert p.mode is Mode.TESTING and p.mx == (web_mh.hostname,) and p.max_age == 604800
    assert policy_id(r.text) == pid  # the TXT id `mailhouse dns` prints names exactly this policy


def test_no_policy_for_other_hosts(web_mh) -> None:
    assert _get(web_mh, "mta-sts.unknown.test").status_code == 404  # not hosted here
    assert _get(web_mh, "mail.example.org").status_code == 404  # not the policy host
    assert _get(web_mh, "mta-sts.example.org:443").status_code == 200  # a port in Host is fine
