"""log.py: the text and JSON line formats carry the same fields, and `[log] format` selects one."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from mailhouse import config, log


@pytest.fixture(autouse=True)
def _root_handlers() -> Iterator[None]:
    """log.setup replaces the root logger's handlers: put pytest's back afterwards."""
    saved, level = list(logging.root.handlers), logging.root.level
    yield
    logging.root.handlers[:] = saved
    logging.root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [x for x in capsys.readouterr().err.splitlines() if x]


def test_json_lines_carry_the_connection_id(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup("INFO", "json")
    lg = log.ConnLogger(logging.getLogger("mailhouse.test"), {"cid": "4B2C1A9F3E07"})
    lg.info("to=<%s> status=%s", "a@example.org", "sent")
    logging.getLogger("mailhouse.other").warning("no id here")
    try:
        raise ValueError("boom")
    except ValueError:
        lg.exception("failed")
    first, second, third = (json.loads(x) for x in _lines(capsys))
    assert first["cid"] == "4B2C1A9F3E07" and first["message"] == "to=<a@example.org> status=sent"
    assert (
        first["level"] == "INFO" and first["logger"] == "mailhouse.test" and first["time"].endswith("+00:00")
    )
    assert "cid" not in second and second["message"] == "no id here"
    assert third["cid"] == "4B2C1A9F3E07" and "ValueError: boom" in third["exception"]


def test_text_lines_keep_the_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup("INFO")
    log.ConnLogger(logging.getLogger("mailhouse.test"), {"cid": "Q1"}).info("hello")
    (line,) = _lines(capsys)
    assert line.endswith("INFO mailhouse.test [Q1] hello")


def test_log_format_key() -> None:
    assert config.from_dict({}).log_format == "text"
    assert config.from_dict({"log": {"format": "json"}}).log_format == "json"
    with pytest.raises(config.ConfigError, match="log.format"):
        config.from_dict({"log": {"format": "xml"}})


def test_serve_writes_json_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import smtplib

    from tests.mailhouse_proc import MailhouseProcess

    (tmp_path / "mh").mkdir()
    mh = MailhouseProcess(tmp_path / "mh", services=("smtp",), extra='[log]\nformat = "json"\n')
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    mh.start()
    try:
        with smtplib.SMTP(*mh.addr("smtp"), timeout=20) as s:
            s.sendmail("bob@remote.test", ["alice@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
        assert mh.wait_log("ready (pid", timeout=20)
    finally:
        mh.stop()
    records = [json.loads(x) for x in mh.logtext().splitlines() if x.strip()]
    assert any(r["message"].startswith("Mailhouse mail.example.org ready") for r in records)
    assert any("cid" in r for r in records)  # the lines about the SMTP session carry its id
