"""[spam] configuration keys (issue 14 §5): defaults, values, errors that name the key."""

from __future__ import annotations

import pytest

from mailhouse.config import ConfigError, SpamConfig, from_dict


def test_defaults() -> None:
    s = from_dict({}).spam
    assert s == SpamConfig()
    assert (s.enabled, s.junk_threshold, s.reject_threshold, s.score_submission) == (True, 5.0, 15.0, False)
    assert s.dnsbl == s.dnswl == s.domain_blocklists == s.trusted_networks == ()


def test_values() -> None:
    s = from_dict(
        {
            "spam": {
                "enabled": False,
                "junk_threshold": 4,
                "reject_threshold": 10.5,
                "dnsbl": ["zen.spamhaus.org", "bl.test=2.5"],
                "dnswl": ["list.dnswl.org=-4"],
                "domain_blocklists": ["dbl.spamhaus.org"],
                "trusted_networks": ["192.0.2.0/24", "2001:db8::/32"],
                "score_submission": True,
                "timeout": 2,
            }
        }
    ).spam
    assert s.junk_threshold == 4.0 and s.reject_threshold == 10.5 and s.timeout == 2.0
    assert s.dnsbl == ("zen.spamhaus.org", "bl.test=2.5") and s.trusted_networks[1] == "2001:db8::/32"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"junk": 1}, "spam.junk"),
        ({"enabled": "yes"}, "spam.enabled"),
        ({"dnsbl": "zen.spamhaus.org"}, "spam.dnsbl"),
        ({"dnsbl": ["bl.test=high"]}, "spam.dnsbl"),
        ({"trusted_networks": ["not-a-net"]}, "spam.trusted_networks"),
        ({"junk_threshold": 20.0}, "spam.reject_threshold"),
        ({"timeout": 0}, "spam.timeout"),
    ],
)
def test_errors_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict({"spam": table}, "mh.toml")
    assert e.value.key == key


def test_rspamd_keys() -> None:
    s = from_dict({}).spam
    assert (s.rspamd_url, s.rspamd_max_size) == ("", 2 * 1024 * 1024)
    s = from_dict({"spam": {"rspamd_url": "http://127.0.0.1:11333", "rspamd_max_size": 1000}}).spam
    assert (s.rspamd_url, s.rspamd_max_size) == ("http://127.0.0.1:11333", 1000)
    for bad, key in (
        ({"rspamd_url": "127.0.0.1:11333"}, "spam.rspamd_url"),
        ({"rspamd_max_size": -1}, "spam.rspamd_max_size"),
    ):
        with pytest.raises(ConfigError, match=key):
            from_dict({"spam": bad})
