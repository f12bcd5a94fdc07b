"""`[listen] https` (issue 16 §4): the web face over TLS with the node's certificate, HSTS on it,
plain HTTP redirected (308) except the paths standards and monitors use over plain HTTP."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from tests.mailhouse_proc import MailhouseProcess


def test_https_listener_redirect_and_hsts(tmp_path: Path) -> None:
    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", services=("smtp", "http", "https"))
    mh.add_domain("example.org")
    mh.start()
    try:
        host, http_port = mh.addr("http")
        https_port = mh.ports["https"]
        ctx = ssl.create_default_context(cafile=str(mh.data_dir / "tls" / "cert.pem"))
        ctx.check_hostname = False  # the self-signed certificate names mail.example.org
        with httpx.Client(verify=ctx, timeout=20) as c:
            r = c.get(f"https://{host}:{https_port}/login")
            assert r.status_code == 200 and "password" in r.text.lower()
            assert r.headers["strict-transport-security"].startswith("max-age=")  # RFC 6797 §7.1
        with httpx.Client(timeout=20, follow_redirects=False) as c:
            r = c.get(f"http://{host}:{http_port}/login?back=%2Fmail", headers={"Host": "mail.example.org"})
            assert r.status_code == 308
            assert r.headers["location"] == f"https://mail.example.org:{https_port}/login?back=%2Fmail"
            assert "strict-transport-security" not in r.headers  # never over plain HTTP (§7.2)
            r = c.post(f"http://{host}:{http_port}/login", headers={"Host": "evil/<x>@example"})
            assert r.status_code == 308  # a Host that is not a plain name is never echoed
            assert r.headers["location"] == f"https://mail.example.org:{https_port}/login"
            # what must stay reachable over plain HTTP
            assert c.get(f"http://{host}:{http_port}/healthz").status_code == 200
            r = c.get(
                f"http://{host}:{http_port}/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.org"}
            )
            assert r.status_code == 200 and "version: STSv1" in r.text
            r = c.get(
                f"http://{host}:{http_port}/.well-known/autoconfig/mail/config-v1.1.xml",
                params={"emailaddress": "a@example.org"},
            )
            assert r.status_code == 200 and "clientConfig" in r.text
    finally:
        mh.stop()
