"""ManageSieve (RFC 5804) through a real socket against `mailhouse serve`: capabilities, STARTTLS,
AUTHENTICATE, every command, quotas and literal/line limits."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailhouse_proc import PASSWORD, MailhouseProcess
from tests.managesieve.conftest import Client, caps_dict, script_literal

SCRIPT = b'require "fileinto";\r\nif header :contains "subject" "report" {\r\n  fileinto "Reports";\r\n}\r\n'


@pytest.fixture
def client(sieve_server: MailhouseProcess) -> Iterator[Client]:
    c = Client(sieve_server.addr("managesieve"))
    yield c
    c.close()


def _tls_login(c: Client, user: str) -> None:
    c.response()  # greeting
    c.starttls()
    assert c.login(user).startswith(b"OK")


def test_greeting_before_tls_offers_starttls_not_sasl(client: Client) -> None:
    caps, final = client.response()
    assert final.startswith(b"OK")
    d = caps_dict(caps)
    assert d["IMPLEMENTATION"] == "Mailhouse" and d["VERSION"] == "1.0"
    assert "STARTTLS" in d and d["SASL"] == ""  # no login mechanisms in plaintext
    assert "fileinto" in (d["SIEVE"] or "").split()
    assert d["NOTIFY"] == "mailto" and d["MAXREDIRECTS"] == "4" and "UNAUTHENTICATE" in d
    # RFC 5804 §1.3 ENCRYPT-NEEDED: no AUTHENTICATE before TLS
    assert client.login("nobody@example.org").startswith(b"NO (ENCRYPT-NEEDED)")
    assert client.cmd(b"LISTSCRIPTS")[1] == b'NO "Authenticate first"\r\n'


def test_starttls_discards_pipelined_plaintext_and_resends_capabilities(client: Client, account: str) -> None:
    client.response()
    client.send(b'STARTTLS\r\nAUTHENTICATE "PLAIN" "AGEAYg=="\r\n')  # injected after STARTTLS
    assert client.line().startswith(b"OK")
    import ssl

    from tests.pop3server.conftest import unverified

    client.sock = unverified().wrap_socket(client.sock, server_hostname="mail.example.org")
    client.buf = b""
    caps, final = client.response()
    d = caps_dict(caps)
    assert final.startswith(b"OK") and "STARTTLS" not in d
    assert set(d["SASL"].split()) >= {"PLAIN", "LOGIN"}  # type: ignore[union-attr]
    assert client.cmd(b'NOOP "sync"')[1] == b'OK (TAG "sync") "Done"\r\n'  # nothing else answered
    assert isinstance(client.sock, ssl.SSLSocket)
    assert client.login(account, "wrong").startswith(b"NO")
    assert client.login(account) == b'OK "Logged in"\r\n'
    assert client.cmd(b"STARTTLS")[1] == b'NO "Already authenticated"\r\n'


def test_authenticate_with_challenges(client: Client, account: str) -> None:
    client.response()
    client.starttls()
    client.send(b'AUTHENTICATE "LOGIN"\r\n')
    assert base64.b64decode(client.line().strip().strip(b'"')) == b"Username:"
    client.send(b'"' + base64.b64encode(account.encode()) + b'"\r\n')
    assert base64.b64decode(client.line().strip().strip(b'"')) == b"Password:"
    client.send(
        b"{%d+}\r\n" % len(base64.b64encode(PASSWORD.encode()))
        + base64.b64encode(PASSWORD.encode())
        + b"\r\n"
    )
    assert client.response()[1] == b'OK "Logged in"\r\n'
    caps = caps_dict(client.cmd(b"CAPABILITY")[0])
    assert caps["OWNER"] == account and "SASL" not in caps
    assert client.cmd(b"UNAUTHENTICATE")[1].startswith(b"OK")
    assert client.cmd(b"LISTSCRIPTS")[1] == b'NO "Authenticate first"\r\n'
    client.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert client.line() == b'""\r\n'
    assert client.cmd(b'"*"')[1] == b'NO "Authentication cancelled"\r\n'


def test_script_commands(client: Client, account: str) -> None:
    _tls_login(client, account)
    assert client.cmd(b"LISTSCRIPTS") == ([], b'OK "Listscripts completed"\r\n')
    assert client.cmd(b'HAVESPACE "main" 100')[1].startswith(b"OK")
    assert client.cmd(b'PUTSCRIPT "main" ' + script_literal(SCRIPT))[1] == b'OK "Putscript completed"\r\n'
    assert client.cmd(b'PUTSCRIPT "second" "keep;"')[1].startswith(b"OK")
    assert client.cmd(b'SETACTIVE "main"')[1].startswith(b"OK")
    assert client.cmd(b"LISTSCRIPTS")[0] == [b'"main" ACTIVE\r\n', b'"second"\r\n']
    lines, final = client.cmd(b'GETSCRIPT "main"')
    assert final.startswith(b"OK") and lines == [b"{" + SCRIPT + b"}\r\n"]  # the literal, read whole
    assert client.cmd(b'GETSCRIPT "nope"')[1].startswith(b"NO (NONEXISTENT)")
    assert client.cmd(b'DELETESCRIPT "main"')[1].startswith(b"NO (ACTIVE)")
    assert client.cmd(b'RENAMESCRIPT "second" "main"')[1].startswith(b"NO (ALREADYEXISTS)")
    assert client.cmd(b'RENAMESCRIPT "main" "Main \xc3\xbc"')[1].startswith(b"OK")
    assert client.cmd(b"LISTSCRIPTS")[0] == [b'"Main \xc3\xbc" ACTIVE\r\n', b'"second"\r\n']
    assert client.cmd(b'SETACTIVE ""')[1].startswith(b"OK")
    assert client.cmd(b"LISTSCRIPTS")[0] == [b'"Main \xc3\xbc"\r\n', b'"second"\r\n']
    assert client.cmd(b'SETACTIVE "nope"')[1].startswith(b"NO (NONEXISTENT)")
    assert client.cmd(b'DELETESCRIPT "Main \xc3\xbc"')[1].startswith(b"OK")
    assert client.cmd(b'DELETESCRIPT "Main \xc3\xbc"')[1].startswith(b"NO (NONEXISTENT)")
    assert client.cmd(b'PUTSCRIPT "bad\\"name\x01" "keep;"')[1] == b'NO "Invalid script name"\r\n'
    assert client.cmd(b"NOOP")[1] == b'OK "Done"\r\n'
    assert client.cmd(b"FROB")[1] == b'NO "Unknown command FROB"\r\n'
    assert client.cmd(b"LOGOUT")[1].startswith(b"OK")
    with pytest.raises(EOFError):
        client.line()


def test_quotas_and_limits(client: Client, account: str) -> None:
    _tls_login(client, account)  # the server runs with max_scripts = 3, max_script_size = 2000
    for n in (b"a", b"b", b"c"):
        assert client.cmd(b'PUTSCRIPT "' + n + b'" "keep;"')[1].startswith(b"OK")
    assert client.cmd(b'PUTSCRIPT "d" "keep;"')[1].startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert client.cmd(b'HAVESPACE "d" 10')[1].startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert client.cmd(b'HAVESPACE "a" 2001')[1].startswith(b"NO (QUOTA/MAXSIZE)")
    big = b"#" + b"x" * 2500 + b"\r\nkeep;\r\n"
    # a literal over the limit is read and dropped, answered NO, and the session goes on in step
    assert client.cmd(b'PUTSCRIPT "a" ' + script_literal(big))[1].startswith(b"NO (QUOTA/MAXSIZE)")
    assert client.cmd(b"CHECKSCRIPT " + script_literal(big))[1].startswith(b"NO (QUOTA/MAXSIZE)")
    assert client.cmd(b'NOOP "still"')[1] == b'OK (TAG "still") "Done"\r\n'
    # a command line beyond 8 KiB cannot be resynchronised: BYE and close
    assert client.cmd(b'NOOP "' + b"x" * 9000 + b'"')[1].startswith(b"BYE")
    with pytest.raises((EOFError, ConnectionError)):
        client.line()


def test_thunderbird_style_flow_pipelined(client: Client, account: str) -> None:
    """What the Thunderbird Sieve add-on sends when a filter is saved: CHECKSCRIPT, PUTSCRIPT and
    SETACTIVE with non-synchronising literals, here in one write (RFC 5804 allows pipelining)."""
    _tls_login(client, account)
    client.send(
        b"CHECKSCRIPT "
        + script_literal(SCRIPT)
        + b'\r\nPUTSCRIPT "thunderbird" '
        + script_literal(SCRIPT)
        + b'\r\nSETACTIVE "thunderbird"\r\nLISTSCRIPTS\r\n'
    )
    assert client.response()[1].startswith(b"OK")
    assert client.response()[1] == b'OK "Putscript completed"\r\n'
    assert client.response()[1].startswith(b"OK")
    assert client.response() == ([b'"thunderbird" ACTIVE\r\n'], b'OK "Listscripts completed"\r\n')


def test_login_deadline_ends_an_idle_session_with_bye(tmp_path: Path) -> None:
    mh = MailhouseProcess(tmp_path, services=("managesieve",), extra="[server]\npreauth_timeout = 1\n")
    mh.start()
    try:
        c = Client(mh.addr("managesieve"))
        c.response()
        c.sock.settimeout(30)
        assert c.line() == b'BYE "Disconnected for inactivity"\r\n'  # waits out the 1 s login deadline
        with pytest.raises(EOFError):
            c.line()
        c.close()
    finally:
        mh.stop()


def test_checkscript_and_putscript_report_error_positions(client: Client, account: str) -> None:
    _tls_login(client, account)
    bad = b'require "fileinto";\r\nif true {\r\n  fileinot "x";\r\n}\r\n'
    final = client.cmd(b"CHECKSCRIPT " + script_literal(bad))[1]
    assert final.startswith(b'NO "line 3, column 3: ') and b"fileinot" in final, final
    final = client.cmd(b'PUTSCRIPT "bad" ' + script_literal(bad))[1]
    assert final.startswith(b'NO "line 3, column 3: ')
    assert client.cmd(b"LISTSCRIPTS")[0] == []  # a script that does not compile is not stored (§2.6)
    unknown = b'require "frobnicate";\r\nkeep;\r\n'
    assert client.cmd(b"CHECKSCRIPT " + script_literal(unknown))[1].startswith(b'NO "line 1, column')
    caps = caps_dict(client.cmd(b"CAPABILITY")[0])
    assert {"fileinto", "vacation", "include", "editheader", "duplicate"} <= set(
        (caps["SIEVE"] or "").split()
    )
