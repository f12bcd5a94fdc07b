"""Debian's sieve-connect (a real ManageSieve client, Perl) uploads, lists, downloads, activates
and deletes a script over STARTTLS against `mailhouse serve`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.mailhouse_proc import PASSWORD, MailhouseProcess

SCRIPT = 'require "fileinto";\nif header :contains "subject" "urgent" {\n  fileinto "Urgent";\n}\n'


def sieve_connect(mh: MailhouseProcess, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = mh.addr("managesieve")
    r, w = os.pipe()
    os.write(w, PASSWORD.encode() + b"\n")
    os.close(w)
    try:
        return subprocess.run(
            ["sieve-connect", "--server", host, "--port", str(port), "--user", user]
            + ["--passwordfd", str(r), "--notlsverify", "--noclearauth", "--authmech", "PLAIN", *args],
            pass_fds=(r,),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(r)


def test_sieve_connect_upload_activate_download(
    sieve_server: MailhouseProcess, account: str, tmp_path: Path
) -> None:
    local = tmp_path / "filters.sieve"
    local.write_text(SCRIPT)
    r = sieve_connect(
        sieve_server, account, "--upload", "--localsieve", str(local), "--remotesieve", "filters"
    )
    assert r.returncode == 0, r.stderr
    r = sieve_connect(sieve_server, account, "--activate", "--remotesieve", "filters")
    assert r.returncode == 0, r.stderr
    r = sieve_connect(sieve_server, account, "--list")
    assert r.returncode == 0, r.stderr
    assert r.stdout == '"filters" ACTIVE\n'
    out = tmp_path / "back.sieve"
    r = sieve_connect(
        sieve_server, account, "--download", "--remotesieve", "filters", "--localsieve", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert out.read_text() == SCRIPT
    r = sieve_connect(sieve_server, account, "--delete", "--remotesieve", "filters")
    assert r.returncode != 0  # the active script cannot be deleted (RFC 5804 §2.10)
    assert "ACTIVE" in r.stderr + r.stdout
    r = sieve_connect(sieve_server, account, "--deactivate")
    assert r.returncode == 0, r.stderr
    r = sieve_connect(sieve_server, account, "--delete", "--remotesieve", "filters")
    assert r.returncode == 0, r.stderr
    r = sieve_connect(sieve_server, account, "--list")
    assert "filters" not in r.stdout
