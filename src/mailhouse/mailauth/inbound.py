"""Authentication of mail arriving from other servers: SPF (RFC 7208), DKIM (RFC 6376), DMARC
(RFC 7489) and ARC (RFC 8617), recorded in one `Authentication-Results:` header (RFC 8601) at the
top of the message, and the DMARC verdict the accept path acts on.

Forged Authentication-Results claiming our host name are removed first (RFC 8601 §5).
The DNS work runs in threads so the event loop never waits on a lookup, within one DNS budget
per message (`dnsbudget.py`, ``[mailauth] dns_budget``): a check out of time is ``temperror``.
The message arrives spooled (`store.spool.SpooledMessage`): forged fields are removed from the
header section and our field prepended to it; the body is only read, in pieces, to hash it.

The verdict (:class:`Verdict`, RFC 7489 §6.6.4 / §6.7 local policy), in this order:
- DMARC ``pass``/``none``/``permerror`` → deliver; ``temperror`` → deliver (logged): a DNS
  outage never holds or loses mail;
- a ``fail`` whose disposition (``p``/``sp`` after ``pct``) is ``none`` → deliver;
- ``[dmarc] enforce = false``, a From domain in ``[dmarc] allow``, or a client in
  ``[limits] trusted_networks`` → deliver (logged, ``dis=none`` in the field);
- an ARC chain that passes, sealed last by a ``[dmarc] trusted_arc_sealers`` domain, whose oldest
  ARC-Authentication-Results has a DMARC pass or an aligned DKIM/SPF pass → deliver
  (``arc-override`` in the field; RFC 8617 §7.2.1, RFC 7489 §7.2.1 local_policy);
- otherwise ``reject`` → refuse (550 5.7.1 before any 250), ``quarantine`` → the Junk folder.
Never called for authenticated submission (only the port-25 listener asks).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from mailhouse.config import Config
from mailhouse.mailauth import authres, dmarc, dnsbudget
from mailhouse.mailauth.arc import ArcResult
from mailhouse.mailauth.dkim import DkimResult
from mailhouse.mailauth.dmarc import DmarcResult, Policy
from mailhouse.mailauth.spf import SpfResult
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

__all__ = ["Action", "Evaluation", "Verdict", "annotate", "decide"]


class Action(enum.Enum):
    DELIVER = "deliver"
    JUNK = "junk"  # RFC 7489 §6.3 p=quarantine: "treat as suspicious" — the recipient's Junk folder
    REJECT = "reject"  # RFC 7489 §6.3 p=reject: refuse during the SMTP transaction (§10.3)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What DMARC evaluated, for the aggregate report (RFC 7489 §7.2, `reports/dmarc_out.py`)."""

    result: DmarcResult  # as recorded: the disposition applied
    spf: SpfResult | None
    dkim: tuple[DkimResult, ...]
    override: str = ""  # why a failing disposition was not applied (RFC 7489 §7.2 reason), "" if it was


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str = ""
    evaluation: Evaluation | None = None  # set when a DMARC policy record was evaluated


DELIVER = Verdict(Action.DELIVER)


def _rescued_by_arc(arc: ArcResult | None, result: DmarcResult, cfg: Config) -> str:
    """The trusted sealer whose passing chain vouches for the original authentication, or ""."""
    if arc is None or arc.result != "pass" or arc.sealer not in cfg.trusted_arc_sealers:
        return ""
    if "pass" in arc.oldest.get("dmarc", []):
        return arc.sealer
    for method in ("dkim", "spf"):  # RFC 7489 §3.1: the passing identity must align with From
        if any(dmarc.aligned(d, result.from_domain, False) for d in arc.oldest_domains.get(method, [])):
            return arc.sealer
    return ""


def decide(
    result: DmarcResult | None, arc: ArcResult | None, cfg: Config, ip: str
) -> tuple[Verdict, DmarcResult | None, str]:
    """(verdict, the result as recorded — disposition as applied, the ARC sealer that rescued it)."""
    if result is None or result.result != "fail" or result.disposition is Policy.NONE:
        if result is not None and result.result == "temperror":
            log.info("DMARC temperror for %s (%s): accepted", result.from_domain, result.reason)
        return DELIVER, result, ""
    waived = ""
    if not cfg.dmarc_enforce:
        waived = "[dmarc] enforce = false"
    elif any(result.from_domain == d or result.from_domain.endswith("." + d) for d in cfg.dmarc_allow):
        waived = f"{result.from_domain} in [dmarc] allow"
    elif cfg.is_trusted(ip):
        waived = f"client {ip} in [limits] trusted_networks"
    sealer = "" if waived else _rescued_by_arc(arc, result, cfg)
    if sealer:
        waived = f"ARC chain sealed by trusted {sealer}"
    if waived:
        log.info("DMARC %s for %s (p=%s) not enforced: %s", result.result, result.from_domain,
                 result.disposition.value, waived)  # fmt: skip
        return DELIVER, dataclasses.replace(result, disposition=Policy.NONE), sealer
    why = f"DMARC policy of {result.from_domain} ({result.reason})"
    if result.disposition is Policy.REJECT:
        return Verdict(Action.REJECT, why), result, ""
    return Verdict(Action.JUNK, why), result, ""


async def annotate(
    message: SpooledMessage,
    cfg: Config,
    ip: str,
    mail_from: str,
    helo: str,
    *,
    rand: Callable[[], float] = random.random,
) -> tuple[SpooledMessage, Verdict]:
    """MESSAGE with forged results removed and our Authentication-Results prepended, and the
    DMARC verdict. RAND draws the ``pct`` sample (RFC 7489 §6.6.4)."""
    message = message.with_head(authres.strip_forged(message.head, cfg.hostname))
    ns = cfg.dns_nameservers or None
    # issue 12 item 9: every check within one DNS budget (temperror past it)
    c = await dnsbudget.check_all(message, ip, mail_from, helo, ns, cfg.dns_budget)
    if c.spf is None and c.dkim is None:  # checker bugs (logged): record nothing
        return message, DELIVER
    result: DmarcResult | None = None
    if c.dmarc is not None:
        result = dmarc.evaluate(c.dmarc, c.spf, c.dkim, rand=rand, problem=c.from_problem)
    verdict, recorded, sealer = decide(result, c.arc, cfg, ip)
    field = authres.field(cfg.hostname, c.spf, c.dkim, recorded, c.arc, sealer)
    if recorded is not None and result is not None and recorded.result in ("pass", "fail"):
        override = (
            ""
            if recorded.disposition is result.disposition
            else "trusted_forwarder"
            if sealer
            else "local_policy"
        )
        ev = Evaluation(recorded, c.spf, tuple(c.dkim or ()), override)
        verdict = dataclasses.replace(verdict, evaluation=ev)
    return message.prepend(field), verdict
