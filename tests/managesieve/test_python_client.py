"""The `managesieve` package (PyPI, maintained RFC 5804 client library) against `mailhouse serve`:
STARTTLS, login, and the script commands through its API."""

from __future__ import annotations

import managesieve
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

SCRIPT = 'require ["fileinto", "imap4flags"];\r\nif address :is "from" "boss@example.com" {\r\n  addflag "\\\\Flagged";\r\n}\r\n'


def test_managesieve_library_flow(sieve_server: MailhouseProcess, account: str) -> None:
    host, port = sieve_server.addr("managesieve")
    c = managesieve.MANAGESIEVE(host, port, use_tls=True, tls_verify=False, timeout=30)
    try:
        assert "PLAIN" in c.loginmechs and not c.supports_tls  # after STARTTLS: no STARTTLS again
        assert c.login("", account, PASSWORD) == "OK"
        assert c.havespace("work", len(SCRIPT)) == "OK"
        assert c.putscript("work", SCRIPT) == "OK"
        assert c.setactive("work") == "OK"
        assert c.listscripts() == ("OK", [("work", True)])
        assert c.getscript("work") == ("OK", SCRIPT)
        assert c.setactive("") == "OK"
        assert c.deletescript("work") == "OK"
        assert c.listscripts() == ("OK", [])
    finally:
        c.logout()
