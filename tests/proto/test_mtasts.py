"""The sans-IO MTA-STS syntax: the policy Mailhouse renders is one its own parser (and RFC 8461 §3.2) accepts."""

from __future__ import annotations

import pytest

from mailhouse.proto.mtasts import Mode, PolicyError, parse_policy, parse_txt, policy_id, render_policy


@pytest.mark.parametrize("mode", list(Mode))
def test_rendered_policy_parses_back(mode: Mode) -> None:
    text = render_policy(mode, ["mail.example.org"], 604800)
    assert text.endswith("\r\n") and text.startswith("version: STSv1\r\n")
    p = parse_policy(text, "example.org", policy_id(text), 0.0)
    assert p.mode is mode and p.mx == ("mail.example.org",) and p.max_age == 604800


def test_policy_id_is_a_valid_txt_id_that_follows_the_content() -> None:
    a = render_policy(Mode.TESTING, ["mail.example.org"], 86400)
    b = render_policy(Mode.ENFORCE, ["mail.example.org"], 86400)
    assert policy_id(a) == policy_id(a) != policy_id(b)
    assert parse_txt([f"v=STSv1; id={policy_id(a)}"]) == policy_id(a)  # §3.1: 1*32 ALPHA/DIGIT


def test_policy_without_mx_is_refused_unless_none() -> None:
    with pytest.raises(PolicyError):
        parse_policy(render_policy(Mode.ENFORCE, [], 86400), "example.org", "x", 0.0)
    assert parse_policy(render_policy(Mode.NONE, [], 86400), "example.org", "x", 0.0).mode is Mode.NONE
