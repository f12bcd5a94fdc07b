"""`mailhouse mailbox share …` (cli/mailbox.py), run as a real subprocess."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_admin_cli import cfgfile, run

__all__ = ["cfgfile"]


def test_share_lifecycle(cfgfile: Path) -> None:
    assert run(cfgfile, "domain", "add", "example.org").returncode == 0
    r = run(cfgfile, "user", "add", "alice@example.org", "--password-stdin", stdin="correct horse battery\n")
    assert r.returncode == 0, r.stderr
    r = run(cfgfile, "mailbox", "share", "create", "Support@Example.org")
    assert r.returncode == 0 and "support@example.org" in r.stdout, r.stderr
    assert run(cfgfile, "mailbox", "share", "create", "support@example.org").returncode == 1
    r = run(cfgfile, "mailbox", "share", "set", "support@example.org", "Alice@example.org", "lrsc")
    assert r.returncode == 0 and "lrskx" in r.stdout, r.stderr  # RFC 4314 §2.1.1: c → k x
    r = run(
        cfgfile,
        "mailbox",
        "share",
        "set",
        "alice@example.org",
        "anyone@example.org",
        "lr",
        "--folder",
        "Sent",
    )
    assert r.returncode == 0, r.stderr
    bad = run(cfgfile, "mailbox", "share", "set", "alice@example.org", "bob@example.org", "lrQ")
    assert bad.returncode == 1 and "unknown right" in bad.stderr
    nobox = run(cfgfile, "mailbox", "share", "set", "alice@example.org", "anyone", "lr", "--folder", "Nope")
    assert nobox.returncode == 1 and "no folder" in nobox.stderr
    assert run(cfgfile, "mailbox", "share", "list", "support@example.org").stdout == (
        "INBOX\talice@example.org\tlrskx\n"
    )
    assert (
        run(cfgfile, "mailbox", "share", "list", "alice@example.org").stdout
        == "Sent\tanyone@example.org\tlr\n"
    )
    assert (
        run(cfgfile, "mailbox", "share", "remove", "support@example.org", "alice@example.org").returncode == 0
    )
    assert (
        run(cfgfile, "mailbox", "share", "remove", "support@example.org", "alice@example.org").returncode == 1
    )
    assert run(cfgfile, "mailbox", "share", "list", "support@example.org").stdout == ""
