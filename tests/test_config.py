"""Configuration: defaults that just work, and errors that name file, key and problem."""

from __future__ import annotations

import os
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
        ('[limits]\ntrusted_networks = ["10.0.0.0/33"]\n', "limits.trusted_networks", "not an IP"),
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


def test_managesieve_listener_and_sieve_keys(tmp_path: Path) -> None:
    """Issue 17: `[listen] managesieve` is a listener now (no longer "not available"), `[sieve]` its limits."""
    script = tmp_path / "before.sieve"
    script.write_text("keep;\n")
    p = tmp_path / "sieve.toml"
    p.write_text(
        '[listen]\nmanagesieve = "127.0.0.1:4190"\n[sieve]\nmax_scripts = 3\nmax_script_size = 1000\n'
        'before = "before.sieve"\n'
    )
    cfg = config.load(str(p))
    assert cfg.listen[config.Listener.MANAGESIEVE] == [("127.0.0.1", 4190)]
    assert (cfg.sieve.max_scripts, cfg.sieve.max_script_size, cfg.sieve.before) == (3, 1000, script)
    d = config.default_config().sieve
    assert (d.max_scripts, d.max_script_size, d.before, d.after) == (16, 64 * 1024, None, None)
    (tmp_path / "global").mkdir()
    p.write_text('[sieve]\nglobal_dir = "global"\n')
    assert config.load(str(p)).sieve.global_dir == tmp_path / "global"
    for bad, key in (
        ("max_scripts = 0", "sieve.max_scripts"),
        ('after = "nope.sieve"', "sieve.after"),
        ('global_dir = "nope"', "sieve.global_dir"),
        ("colour = 1", "sieve.colour"),
    ):
        p.write_text(f"[sieve]\n{bad}\n")
        with pytest.raises(config.ConfigError) as ei:
            config.load(str(p))
        assert ei.value.key == key


def test_listen_is_keyed_by_listener() -> None:
    cfg = config.from_dict({"listen": {"imaps": "127.0.0.1:993", "submission": "127.0.0.1:587"}})
    assert list(cfg.listen) == [config.Listener.IMAPS, config.Listener.SUBMISSION]
    assert all(type(k) is config.Listener for k in cfg.listen)
    assert cfg.listen["imaps"] == cfg.listen[config.Listener.IMAPS] == [("127.0.0.1", 993)]  # StrEnum
    assert all(type(k) is config.Listener for k in config.default_config().listen)


def test_implicit_tls_listeners() -> None:
    assert {ln for ln in config.Listener if ln.implicit_tls} == {"submissions", "imaps", "pop3s", "https"}
    assert [str(ln) for ln in config.Listener] == list(config.SERVICES)
    assert "managesieve" in config.SERVICES and not config.Listener.MANAGESIEVE.implicit_tls


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


def test_auth_limit_keys() -> None:
    """Issue 12 item 7: the login throttle and ban keys of ``[auth]``."""
    d = config.from_dict({}).auth_limits
    assert (d.failure_window, d.failure_delay, d.max_failure_delay) == (900.0, 0.5, 15.0)
    assert (d.account_delay_after, d.network_delay_after, d.ban_after, d.ban_time) == (5, 30, 20, 3600.0)
    cfg = config.from_dict(
        {"auth": {"failure_delay": 0.1, "max_failure_delay": 2, "ban_after": 0, "ban_time": 60}}
    )
    lim = cfg.auth_limits
    assert (lim.failure_delay, lim.max_failure_delay, lim.ban_after, lim.ban_time) == (0.1, 2.0, 0, 60.0)
    for bad, key in (
        ({"ban_after": -1}, "auth.ban_after"),
        ({"account_delay_after": 1.5}, "auth.account_delay_after"),
        ({"failure_delay": 0}, "auth.failure_delay"),
        ({"failure_delay": 2, "max_failure_delay": 1}, "auth.max_failure_delay"),
        ({"ban_for": 1}, "auth.ban_for"),
    ):
        with pytest.raises(config.ConfigError, match=key.replace(".", r"\.")):
            config.from_dict({"auth": bad})


def test_trusted_networks(tmp_path: Path) -> None:
    p = tmp_path / "t.toml"
    p.write_text('[limits]\ntrusted_networks = ["192.0.2.0/24", "2001:db8::/32"]\n')
    cfg = config.load(str(p))
    assert cfg.is_trusted("192.0.2.77") and cfg.is_trusted("2001:db8::5")
    assert not cfg.is_trusted("192.0.3.1") and not cfg.is_trusted("not-an-ip")
    assert not config.default_config().is_trusted("127.0.0.1")  # nothing is trusted by default


def test_connection_limit_keys() -> None:
    """Issue 12 item 5: ``[connections]`` and ``[limits] trusted_networks``."""
    d = config.from_dict({})
    assert (d.conn_per_ip, d.conn_per_user_ip, d.conn_per_account, d.max_connections) == ({}, 10, 50, 0)
    assert d.trusted_networks == []
    cfg = config.from_dict(
        {
            "limits": {"trusted_networks": ["192.0.2.0/24", "2001:db8::/32"]},
            "connections": {
                "per_ip": {"smtp": 100, "imap": 0},
                "per_user_ip": 5,
                "per_account": 20,
                "max": 500,
            },
        }
    )
    assert cfg.conn_per_ip == {"smtp": 100, "imap": 0}
    assert (cfg.conn_per_user_ip, cfg.conn_per_account, cfg.max_connections) == (5, 20, 500)
    assert cfg.trusted_networks == ["192.0.2.0/24", "2001:db8::/32"]
    with pytest.raises(config.ConfigError, match="connections.per_ip.smtpx"):
        config.from_dict({"connections": {"per_ip": {"smtpx": 1}}})
    with pytest.raises(config.ConfigError, match="connections.per_user_ip"):
        config.from_dict({"connections": {"per_user_ip": -1}})
    with pytest.raises(config.ConfigError, match="connections.maximum"):
        config.from_dict({"connections": {"maximum": 1}})
    with pytest.raises(config.ConfigError, match="limits.trusted_networks"):
        config.from_dict({"limits": {"trusted_networks": ["not-a-net"]}})


def test_search_limits() -> None:
    """Issue 12 item 4: [limits] search_time_budget and search_max_decoded_bytes."""
    cfg = config.from_dict({})
    assert cfg.search_time_budget == 20.0
    assert cfg.search_max_decoded_bytes == cfg.max_message_size
    cfg = config.from_dict({"limits": {"search_time_budget": 2.5, "search_max_decoded_bytes": 1 << 20}})
    assert (cfg.search_time_budget, cfg.search_max_decoded_bytes) == (2.5, 1 << 20)
    for bad in ({"search_time_budget": 0}, {"search_time_budget": "1"}, {"search_max_decoded_bytes": -1}):
        with pytest.raises(config.ConfigError, match=next(iter(bad))):
            config.from_dict({"limits": bad})


def test_cpu_pool_limits() -> None:
    """Issue 12 item 1: [limits] cpu_workers, cpu_queue, cpu_budget (the CPU process pool)."""
    cfg = config.from_dict({})
    assert cfg.cpu_workers == max(1, min(2, os.cpu_count() or 1))
    assert (cfg.cpu_queue, cfg.cpu_budget) == (32, 30.0)
    cfg = config.from_dict({"limits": {"cpu_workers": 4, "cpu_queue": 8, "cpu_budget": 2.5}})
    assert (cfg.cpu_workers, cfg.cpu_queue, cfg.cpu_budget) == (4, 8, 2.5)
    for bad in ({"cpu_workers": 0}, {"cpu_queue": "1"}, {"cpu_budget": 0}, {"cpu_budget": "9"}):
        with pytest.raises(config.ConfigError, match=next(iter(bad))):
            config.from_dict({"limits": bad})


def test_send_limits_and_forwarded_defaults(tmp_path: Path) -> None:
    """Issue 12 item 12: per-account send limits on by default, no proxy believed by default."""
    cfg = config.load(None)
    assert cfg.send_rate == 30 and cfg.recipients_per_day == 1000
    assert cfg.forwarded_allow_ips == []  # was 127.0.0.1/::1: every local process could spoof
    p = tmp_path / "limits.toml"
    p.write_text(
        '[limits]\nsend_rate = 0\nrecipients_per_day = 50\n[web]\nforwarded_allow_ips = ["10.0.0.1"]\n'
    )
    cfg = config.load(str(p))
    assert (cfg.send_rate, cfg.recipients_per_day, cfg.forwarded_allow_ips) == (0, 50, ["10.0.0.1"])
    p.write_text("[limits]\nsend_rate = -1\n")
    with pytest.raises(config.ConfigError) as ei:
        config.load(str(p))
    assert ei.value.key == "limits.send_rate"


def test_pregreet_and_dns_budget_keys() -> None:
    """Issue 12 items 8 and 9: the pregreet memory's TTLs and the per-message DNS budget."""
    d = config.from_dict({})
    assert (d.pregreet_wait, d.pregreet_ttl, d.pregreet_fail_ttl, d.dns_budget) == (0.2, 86400.0, 600.0, 5.0)
    cfg = config.from_dict(
        {
            "server": {"smtp_pregreet_ttl": 3600, "smtp_pregreet_fail_ttl": 0},
            "mailauth": {"dns_budget": 2.5},
        }
    )
    assert (cfg.pregreet_ttl, cfg.pregreet_fail_ttl, cfg.dns_budget) == (3600.0, 0.0, 2.5)
    with pytest.raises(config.ConfigError, match="smtp_pregreet_ttl"):
        config.from_dict({"server": {"smtp_pregreet_ttl": -1}})
    with pytest.raises(config.ConfigError, match="dns_budget"):
        config.from_dict({"mailauth": {"dns_budget": 0}})


def test_max_inflight_bytes_default_and_key() -> None:
    d = config.from_dict({})
    assert d.max_inflight_bytes == 256 * 1024 * 1024  # 256 MiB ≥ 2 × the 50 MiB message limit
    big = config.from_dict({"limits": {"max_message_size": 200_000_000}})
    assert big.max_inflight_bytes == 400_000_000  # two messages of the largest size always fit
    assert config.from_dict({"limits": {"max_inflight_bytes": 1000}}).max_inflight_bytes == 1000
    with pytest.raises(config.ConfigError, match="max_inflight_bytes"):
        config.from_dict({"limits": {"max_inflight_bytes": 0}})


def test_spam_bayes_keys() -> None:
    """Issue 14 §3: ``[spam] bayes``, ``bayes_min_spam``, ``bayes_min_ham``."""
    d = config.from_dict({})
    assert (d.spam_bayes, d.spam_bayes_min_spam, d.spam_bayes_min_ham) == (True, 200, 200)
    cfg = config.from_dict({"spam": {"bayes": False, "bayes_min_spam": 50, "bayes_min_ham": 0}})
    assert (cfg.spam_bayes, cfg.spam_bayes_min_spam, cfg.spam_bayes_min_ham) == (False, 50, 0)
    for bad, key in (
        ({"bayes": "yes"}, "spam.bayes"),
        ({"bayes_min_spam": -1}, "spam.bayes_min_spam"),
        ({"bayes_min_ham": 1.5}, "spam.bayes_min_ham"),
        ({"bayes_min": 1}, "spam.bayes_min"),
    ):
        with pytest.raises(config.ConfigError, match=key.replace(".", r"\.")):
            config.from_dict({"spam": bad})


def test_reports_keys() -> None:
    """Issue 14 §2: [reports] enabled, dmarc_address, tlsrpt_address, folder."""
    cfg = config.from_dict({})
    assert (cfg.reports_enabled, cfg.report_addresses, cfg.reports_folder) == (
        True,
        ("postmaster",),
        "Reports",
    )
    cfg = config.from_dict(
        {"reports": {"enabled": False, "dmarc_address": "DMARC-Reports", "tlsrpt_address": "tls@example.org"}}
    )
    assert (cfg.reports_enabled, cfg.report_addresses) == (False, ("dmarc-reports", "tls@example.org"))
    for bad in ({"folder": "INBOX"}, {"dmarc_address": "@x"}, {"enabled": "yes"}, {"sender": "x"}):
        with pytest.raises(config.ConfigError, match="reports"):
            config.from_dict({"reports": bad})


def test_dns_dnssec_keys(tmp_path: Path) -> None:
    """[dns] dnssec (issue 15 item 9): "validate", "resolver" or "off" (default); trust_anchor
    must be an existing file."""
    assert config.from_dict({}).dns_dnssec is config.Dnssec.OFF
    assert config.from_dict({"dns": {"dnssec": "resolver"}}).dns_dnssec is config.Dnssec.RESOLVER
    assert config.from_dict({"dns": {"dnssec": "validate"}}).dns_dnssec is config.Dnssec.VALIDATE
    with pytest.raises(config.ConfigError, match="dns.dnssec"):
        config.from_dict({"dns": {"dnssec": "yes"}})
    anchor = tmp_path / "root.key"
    anchor.write_text(". IN DS 20326 8 2 e06d44b80b8f1d39a95c0b0d7c65d08458e880409bbc683457104237c7f8ec8d\n")
    assert config.from_dict({"dns": {"trust_anchor": str(anchor)}}).dns_trust_anchor == anchor
    with pytest.raises(config.ConfigError, match="dns.trust_anchor"):
        config.from_dict({"dns": {"trust_anchor": str(tmp_path / "missing")}})


def test_srs_section() -> None:
    """[srs] (issue 15 item 6): domain defaults to the host name; bad values name the key."""
    cfg = config.from_dict({"hostname": "mx.example.test", "data_dir": "/tmp/x"})
    assert (cfg.srs_enabled, cfg.srs_domain, cfg.srs_max_age, cfg.srs_secret_generation) == (
        True,
        "mx.example.test",
        21,
        1,
    )
    cfg = config.from_dict(
        {"hostname": "h.test", "data_dir": "/tmp/x", "srs": {"domain": "SRS.Example.test.", "max_age": 7}}
    )
    assert (cfg.srs_domain, cfg.srs_max_age) == ("srs.example.test", 7)
    for bad in ({"max_age": 0}, {"max_age": 2000}, {"secret_generation": 0}, {"domain": 3}, {"secrets": 1}):
        with pytest.raises(config.ConfigError, match="srs"):
            config.from_dict({"hostname": "h.test", "data_dir": "/tmp/x", "srs": bad})


def test_log_file(tmp_path: Path) -> None:
    cfg = config.from_dict({"log": {"file": str(tmp_path / "mailhouse.log")}})
    assert cfg.log_file == tmp_path / "mailhouse.log"
    with pytest.raises(config.ConfigError, match=r"log\.file"):
        config.from_dict({"log": {"file": str(tmp_path / "missing" / "mailhouse.log")}})
    with pytest.raises(config.ConfigError, match=r"log\.file"):
        config.from_dict({"log": {"file": 3}})
