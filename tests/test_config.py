"""Configuration: defaults that just work, and errors that name file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhouse import config


def test_defaults_listen_on_unprivileged_loopback_ports() -> None:
    cfg = (
        config.load(None) if not __import__("os").environ.get("MAILHOUSE_CONFIG") else config.default_config()
    )
    assert cfg.listen["smtp"] == [("127.0.0.1", 2525)]
    assert cfg.listen["imaps"] == [("127.0.0.1", 2993)]
    assert cfg.listen["http"] == [("127.0.0.1", 8080)]
    assert cfg.data_dir.name == "mailhouse-data"
    assert cfg.store.startswith("sqlite:///") and cfg.store.endswith("mailhouse.db")
    assert cfg.hostname


def test_full_file(tmp_path: Path) -> None:
    p = tmp_path / "mailhouse.toml"
    p.write_text(
        'hostname = "mx.example.org"\ndata_dir = "data"\n'
        '[listen]\nsmtp = "127.0.0.2:25"\nimap = ["127.0.0.1:143", "[::1]:143"]\n'
        '[store]\nurl = "postgresql://u@127.0.0.1/mh"\n'
        '[dns]\nnameservers = ["127.0.0.1:5353", "127.0.0.53"]\n'
    )
    cfg = config.load(str(p))
    assert cfg.hostname == "mx.example.org"
    assert cfg.data_dir == (tmp_path / "data").resolve()
    assert cfg.listen == {"smtp": [("127.0.0.2", 25)], "imap": [("127.0.0.1", 143), ("::1", 143)]}
    assert "pop3" not in cfg.listen  # a missing key means that service is off
    assert cfg.store == "postgresql://u@127.0.0.1/mh"
    assert cfg.dns_nameservers == [("127.0.0.1", 5353), ("127.0.0.53", 53)]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[listen]\nsmtp = "nonsense"\n', "listen.smtp", "host:port"),
        ('[listen]\nsmtp = "127.0.0.1:99999"\n', "listen.smtp", "out of range"),
        ('[listen]\nsmtpd = "127.0.0.1:25"\n', "listen.smtpd", "unknown service"),
        ('[store]\nurl = "mysql://x"\n', "store.url", "sqlite"),
        ('hostnme = "x"\n', "hostnme", "unknown key"),
        ("[server]\nworker = 2\n", "server.worker", "unknown key (known: "),
        ("[auth]\ncache_ttl = -1\n", "auth.cache_ttl", "≥ 0"),
        ('[queue]\nsource_address = "mail.example"\n', "queue.source_address", "not an IP"),
        ('[queue]\nsource_address = ["192.0.2.1", "192.0.2.2"]\n', "queue.source_address", "one IPv4"),
        ("[queue]\nlifetme = 3600\n", "queue.lifetme", "unknown key"),
        ('relayhost = { host = "smtp.example", prot = 587 }\n', "relayhost.prot", "unknown key"),
        ('[tls]\ncert = "missing.pem"\nkey = "missing.key"\n', "tls.cert", "does not exist"),
        ("hostname = [1]\n", "hostname", "non-empty string"),
        ("= broken", "-", "invalid TOML"),
        ('[web]\nforwarded_allow_ips = "10.0.0.1"\n', "web.forwarded_allow_ips", "list"),
        ('[web]\nforwarded_allow_ips = ["proxy.example"]\n', "web.forwarded_allow_ips", "not an IP"),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(config.ConfigError) as ei:
        config.load(str(p))
    assert ei.value.path == str(p)
    assert ei.value.key == key
    assert problem in str(ei.value)


def test_managesieve_is_an_error_naming_the_missing_feature(tmp_path: Path) -> None:
    p = tmp_path / "sieve.toml"
    p.write_text('[listen]\nmanagesieve = "127.0.0.1:4190"\n')
    with pytest.raises(config.ConfigError) as ei:
        config.load(str(p))
    assert ei.value.path == str(p) and ei.value.key == "listen.managesieve"
    assert str(ei.value) == f"{p}: listen.managesieve: ManageSieve is not available yet in this version"


def test_listen_is_keyed_by_listener() -> None:
    cfg = config.from_dict({"listen": {"imaps": "127.0.0.1:993", "submission": "127.0.0.1:587"}})
    assert list(cfg.listen) == [config.Listener.IMAPS, config.Listener.SUBMISSION]
    assert all(type(k) is config.Listener for k in cfg.listen)
    assert cfg.listen["imaps"] == cfg.listen[config.Listener.IMAPS] == [("127.0.0.1", 993)]  # StrEnum
    assert all(type(k) is config.Listener for k in config.default_config().listen)


def test_implicit_tls_listeners() -> None:
    assert {ln for ln in config.Listener if ln.implicit_tls} == {"submissions", "imaps", "pop3s"}
    assert [str(ln) for ln in config.Listener] == list(config.SERVICES)
    assert "managesieve" not in config.SERVICES


def test_deadline_and_stress_keys() -> None:
    """Issue 12 item 6: the deadline, login-phase, stress and pipelining keys of ``[server]``."""
    d = config.from_dict({})
    assert (d.smtp_command_deadline, d.session_timeout, d.preauth_timeout) == (300.0, 3600.0, 180.0)
    assert (d.stress_timeout, d.connection_budget, d.smtp_forbid_unauth_pipelining) == (10.0, 1000, True)
    cfg = config.from_dict(
        {
            "server": {
                "smtp_command_deadline": 60,
                "smtp_min_data_rate": 1000,
                "session_timeout": 600,
                "preauth_timeout": 60,
                "stress_timeout": 5,
                "connection_budget": 200,
                "smtp_forbid_unauth_pipelining": False,
            }
        }
    )
    assert (cfg.smtp_command_deadline, cfg.smtp_min_data_rate, cfg.session_timeout) == (60, 1000, 600)
    assert (cfg.preauth_timeout, cfg.stress_timeout, cfg.connection_budget) == (60, 5, 200)
    assert cfg.smtp_forbid_unauth_pipelining is False
    with pytest.raises(config.ConfigError, match="connection_budget"):
        config.from_dict({"server": {"connection_budget": 0}})
    with pytest.raises(config.ConfigError, match="preauth_timeout"):
        config.from_dict({"server": {"preauth_timeout": -1}})


def test_max_inflight_bytes_default_and_key() -> None:
    d = config.from_dict({})
    assert d.max_inflight_bytes == 256 * 1024 * 1024  # 256 MiB ≥ 2 × the 50 MiB message limit
    big = config.from_dict({"limits": {"max_message_size": 200_000_000}})
    assert big.max_inflight_bytes == 400_000_000  # two messages of the largest size always fit
    assert config.from_dict({"limits": {"max_inflight_bytes": 1000}}).max_inflight_bytes == 1000
    with pytest.raises(config.ConfigError, match="max_inflight_bytes"):
        config.from_dict({"limits": {"max_inflight_bytes": 0}})
