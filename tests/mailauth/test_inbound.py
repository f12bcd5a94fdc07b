"""The DMARC verdict (mailauth/inbound.decide) on a table: enforce, allow, trusted networks, ARC
rescue by a trusted sealer; and the Authentication-Results field it leads to (RFC 8601)."""

from __future__ import annotations

import pytest

from mailhouse import config
from mailhouse.mailauth import authres, inbound
from mailhouse.mailauth.arc import ArcResult
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.dmarc import DmarcResult, Policy
from mailhouse.mailauth.spf import SpfResult

REJECT = DmarcResult("fail", "bank.test", Policy.REJECT, Policy.REJECT, "no aligned SPF or DKIM pass")
QUARANTINE = DmarcResult("fail", "shop.test", Policy.QUARANTINE, Policy.QUARANTINE, "x")
GOOD_ARC = ArcResult("pass", "lists.test", {"dmarc": ["pass"]})


def _cfg(**dmarc: object) -> config.Config:
    return config.from_dict({"dmarc": {"trusted_arc_sealers": ["lists.test"], **dmarc}})


@pytest.mark.parametrize(
    ("result", "arc", "cfg", "ip", "action", "sealer"),
    [
        (REJECT, None, _cfg(), "192.0.2.1", inbound.Action.REJECT, ""),
        (QUARANTINE, None, _cfg(), "192.0.2.1", inbound.Action.JUNK, ""),
        (REJECT, None, _cfg(enforce=False), "192.0.2.1", inbound.Action.DELIVER, ""),
        (REJECT, None, _cfg(allow=["bank.test"]), "192.0.2.1", inbound.Action.DELIVER, ""),
        (REJECT, None, _cfg(allow=["other.test"]), "192.0.2.1", inbound.Action.REJECT, ""),
        (
            REJECT,
            None,
            config.from_dict({"limits": {"trusted_networks": ["192.0.2.0/24"]}}),
            "192.0.2.1",
            inbound.Action.DELIVER,
            "",
        ),
        (REJECT, GOOD_ARC, _cfg(), "192.0.2.1", inbound.Action.DELIVER, "lists.test"),
        # the chain passes but the sealer is not trusted
        (
            REJECT,
            ArcResult("pass", "rogue.test", {"dmarc": ["pass"]}),
            _cfg(),
            "192.0.2.1",
            inbound.Action.REJECT,
            "",
        ),
        # a trusted sealer whose chain fails
        (
            REJECT,
            ArcResult("fail", "lists.test", {"dmarc": ["pass"]}),
            _cfg(),
            "192.0.2.1",
            inbound.Action.REJECT,
            "",
        ),
        # the oldest AAR recorded no pass for the author's domain
        (
            REJECT,
            ArcResult("pass", "lists.test", {"dmarc": ["fail"]}),
            _cfg(),
            "192.0.2.1",
            inbound.Action.REJECT,
            "",
        ),
        (
            REJECT,
            ArcResult("pass", "lists.test", {"dkim": ["pass"]}, {"dkim": ["mail.bank.test"]}),
            _cfg(),
            "192.0.2.1",
            inbound.Action.DELIVER,
            "lists.test",
        ),
        (
            REJECT,
            ArcResult("pass", "lists.test", {"dkim": ["pass"]}, {"dkim": ["other.test"]}),
            _cfg(),
            "192.0.2.1",
            inbound.Action.REJECT,
            "",
        ),
        (DmarcResult("temperror", "bank.test"), None, _cfg(), "192.0.2.1", inbound.Action.DELIVER, ""),
        (
            DmarcResult("pass", "bank.test", Policy.REJECT),
            None,
            _cfg(),
            "192.0.2.1",
            inbound.Action.DELIVER,
            "",
        ),
        (
            DmarcResult("fail", "bank.test", Policy.REJECT, Policy.NONE, sampled_out=True),
            None,
            _cfg(),
            "192.0.2.1",
            inbound.Action.DELIVER,
            "",
        ),
    ],
)
def test_decide(
    result: DmarcResult,
    arc: ArcResult | None,
    cfg: config.Config,
    ip: str,
    action: inbound.Action,
    sealer: str,
) -> None:
    verdict, recorded, rescued_by = inbound.decide(result, arc, cfg, ip)
    assert (verdict.action, rescued_by) == (action, sealer)
    assert recorded is not None
    if action is inbound.Action.DELIVER and result.result == "fail":
        assert recorded.disposition is Policy.NONE  # what was applied is what is recorded


def test_authentication_results_field() -> None:
    spf = SpfResult("fail", "", "bank.test", "mailfrom")
    dkim = [DkimResult("fail", "bank.test", "sel", "rsa-sha256")]
    value = authres.build("mx.example.org", spf, dkim, REJECT, ArcResult("pass", "lists.test"), "lists.test")
    assert value == (
        "mx.example.org;\r\n\tspf=fail smtp.mailfrom=bank.test;\r\n"
        "\tdkim=fail header.d=bank.test header.s=sel header.a=rsa-sha256;\r\n"
        "\tdmarc=fail (p=reject dis=reject arc-override=lists.test) header.from=bank.test;\r\n"
        "\tarc=pass (as.d=lists.test)"
    )
    # hostile From domains cannot inject results (RFC 8601 §5)
    evil = DmarcResult("none", "x.test; dmarc=pass")
    assert "dmarc=none header.from=x.testdmarcpass" in authres.build(
        "mx", None, None, evil, ArcResult("none")
    )


def test_dmarc_config_keys() -> None:
    cfg = config.from_dict({})
    assert (cfg.dmarc_enforce, cfg.dmarc_allow, cfg.trusted_arc_sealers) == (True, [], [])
    cfg = config.from_dict(
        {"dmarc": {"enforce": False, "allow": ["Partner.Test."], "trusted_arc_sealers": ["lists.test"]}}
    )
    assert (cfg.dmarc_enforce, cfg.dmarc_allow, cfg.trusted_arc_sealers) == (
        False,
        ["partner.test"],
        ["lists.test"],
    )
    for bad in (
        {"allow": "partner.test"},
        {"enforce": "yes"},
        {"trusted_arc_sealers": [""]},
        {"reject": True},
    ):
        with pytest.raises(config.ConfigError):
            config.from_dict({"dmarc": bad})
