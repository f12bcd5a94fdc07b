"""The spam pipeline: every enabled rule at once, within one time budget, summed into a verdict.

Run by the SMTP server at end of DATA on port 25 after Authentication-Results is prepended and
before the reply (issue 14 §3): `SpamFilter.evaluate` gives a `Verdict` — the total score, the
action (ACCEPT below ``[spam] junk_threshold``, JUNK from it, REJECT from
``reject_threshold``), and the hits sorted by |score| so the first explains the most.

Rules (`spam.rules.Rule`) run concurrently as tasks; the budget (``[spam] timeout``) is one
deadline for all of them, as `mailauth/dnsbudget.py` does for SPF and DKIM: every DNS look-up
gets only the time left, and at the deadline (plus `GRACE`) unfinished rules are cancelled and
named in ``Verdict.unfinished`` — the verdict goes on without them, never a stall. A rule that
raises (a bug) is logged with its traceback and counts as silent: a rule never loses mail.

Slots for rules made elsewhere (wired by `services.build`, passed as ``extra_rules``): the
per-user Bayes classifier (``spam.bayes``, issue 14 §3: a rule whose hit is BAYES_xx from the
recipient's probability) and anything else that satisfies `Rule`. DMARC and ARC outcomes need
no slot: `spam.authrules` reads them from our Authentication-Results.

Invariants: `Scoring.finish` returns within ``timeout + GRACE`` seconds of `SpamFilter.start`
(the rules after authentication read one header field); hit names are unique in a
verdict; a verdict with GTUBE is always at least JUNK (its score is 1000).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailhouse import metrics
from mailhouse.config import Config, SpamConfig, address_in, parse_networks
from mailhouse.proto.smtp import Reply
from mailhouse.spam.authrules import AuthResultsRule
from mailhouse.spam.content import ContentRules
from mailhouse.spam.dnslists import DomainLists, IpLists
from mailhouse.spam.headerrules import HeaderAnomalies
from mailhouse.spam.lookup import Lookup
from mailhouse.spam.rdns import ClientDns
from mailhouse.spam.rspamd import RspamdRule
from mailhouse.spam.rules import Action, Context, Hit, Rule
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

__all__ = ["DNS_SKIPPED", "GRACE", "Scoring", "SpamFilter", "Verdict", "decide", "spam_refusal"]

#: Seconds past the budget the rules get to hand back (a thread finishing its scan).
GRACE = 0.3
#: The temperror result of a message whose DNS look-ups the breaker skipped (it scores nothing).
DNS_SKIPPED = "DNS_TEMPERROR"


def dns_skipped_reason(n: int) -> str:
    return f"{n} DNS look-up(s) skipped: the resolver has not been answering (temperror, retried later)"


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    action: Action
    hits: tuple[Hit, ...]  # sorted by |score|, largest first
    required: float  # the junk threshold the score was measured against
    unfinished: tuple[str, ...] = ()  # rules cut off by the budget
    elapsed: float = 0.0  # seconds the evaluation took

    @property
    def top(self) -> Hit | None:
        return self.hits[0] if self.hits and self.hits[0].score > 0 else None

    def summary(self, n: int = 3) -> str:
        """``score=7.2 action=junk tests=GTUBE(1000),HTML_ONLY(0.7) time=1.3ms`` for the log line (the
        time is the evaluation's, start to verdict: what scoring costs a message's reply)."""
        tops = ",".join(f"{h.name}({h.score:g})" for h in self.hits[:n]) or "-"
        return (
            f"score={self.score:.1f} action={self.action.value} tests={tops} time={self.elapsed * 1000:.1f}ms"
        )


def decide(score: float, spam: SpamConfig) -> Action:
    if score >= spam.reject_threshold:
        return Action.REJECT
    if score >= spam.junk_threshold:
        return Action.JUNK
    return Action.ACCEPT


def spam_refusal(verdict: Verdict) -> Reply:
    """``550 5.7.1`` with the top reason (RFC 3463 X.7.1: delivery not authorized, message refused)."""
    top = verdict.top
    why = f"{top.name}: {top.reason}" if top else "spam"
    return Reply(550, "5.7.1", f"Message refused as spam (score {verdict.score:.1f}; {why})")


class SpamFilter:
    """The node's pipeline: the default rules from CFG, plus EXTRA_RULES (the Bayes slot)."""

    def __init__(
        self,
        cfg: Config,
        extra_rules: Sequence[Rule] = (),
        lookup: Lookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.settings = cfg.spam
        self.clock = clock
        lookup = self.lookup = lookup or Lookup(cfg.dns_nameservers or None)
        # run once Authentication-Results is there (instant: they read a header field)
        self.after_auth: list[Rule] = [AuthResultsRule()]
        rules: list[Rule] = [
            HeaderAnomalies(),
            ContentRules(),
            ClientDns(lookup, cfg.hostname),
        ]
        if self.settings.dnsbl or self.settings.dnswl:
            rules.append(IpLists(lookup, self.settings.dnsbl, self.settings.dnswl))
        if self.settings.domain_blocklists:
            rules.append(DomainLists(lookup, self.settings.domain_blocklists))
        if self.settings.rspamd_url:  # its score is added to ours (spam/rspamd.py)
            rules.append(RspamdRule(self.settings.rspamd_url, self.settings.rspamd_max_size, lookup))
        self.rules: list[Rule] = rules + list(extra_rules)

    def applies(self, ip: str, authenticated: bool) -> bool:
        """Whether mail from IP (AUTHENTICATED or not) is scored at all (issue 14 §5)."""
        s = self.settings
        if not s.enabled or (authenticated and not s.score_submission):
            return False
        return not (s.trusted_networks and address_in(ip, parse_networks(s.trusted_networks)))

    def start(
        self,
        message: SpooledMessage,
        ip: str,
        helo: str,
        mail_from: str,
        recipients: Sequence[str],
        *,
        queue_id: str = "",
        user: str | None = None,
    ) -> Scoring:
        """Start the rules on MESSAGE (as received) now; `Scoring.finish` gives the verdict. The SMTP
        server starts them before the SPF/DKIM checks of `mailauth.inbound`, so the two budgets run
        side by side and a message waits for the longer one, not for their sum."""
        now = time.monotonic()
        ctx = Context(
            ip=ip,
            helo=helo,
            mail_from=mail_from,
            recipients=tuple(recipients),
            message=message,
            authserv_id=self.cfg.hostname,
            deadline=now + self.settings.timeout,
            clock=self.clock,
            queue_id=queue_id,
            user=user,
        )
        tasks = {asyncio.ensure_future(r.check(ctx)): r.name for r in self.rules}
        return Scoring(self, ctx, tasks, now)

    async def evaluate(
        self, message: SpooledMessage, ip: str, helo: str, mail_from: str, recipients: Sequence[str]
    ) -> Verdict:
        """The verdict on MESSAGE, which already carries our Authentication-Results (if any)."""
        return await self.start(message, ip, helo, mail_from, recipients).finish(message)


class Scoring:
    """The rules of one message under way (`SpamFilter.start`)."""

    def __init__(
        self, spam: SpamFilter, ctx: Context, tasks: dict[asyncio.Task[list[Hit]], str], started: float
    ) -> None:
        self.spam = spam
        self.ctx = ctx
        self.tasks = tasks
        self.started = started
        self.skipped = spam.lookup.skipped  # DNS look-ups the breaker skipped before this message

    def cancel(self) -> None:
        for t in self.tasks:
            t.cancel()

    async def finish(self, annotated: SpooledMessage) -> Verdict:
        """Wait for the rules until the deadline (plus `GRACE`), then run the rules that read
        ANNOTATED's Authentication-Results, and sum it all up."""
        ctx, tasks, settings = self.ctx, self.tasks, self.spam.settings
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, ctx.deadline - time.monotonic()) + GRACE)
        for t in pending:
            t.cancel()
        hits: dict[str, Hit] = {}
        for t in done:
            try:
                for h in t.result():
                    hits.setdefault(h.name, h)
            except Exception:
                log.exception("spam rule %s failed for ip=%s", tasks[t], ctx.ip)
        if skipped := self.spam.lookup.skipped - self.skipped:  # spam/lookup.py's breaker is open
            hits.setdefault(DNS_SKIPPED, Hit(DNS_SKIPPED, 0.0, dns_skipped_reason(skipped)))
        unfinished = tuple(sorted(tasks[t] for t in pending))
        if unfinished:
            log.info(
                "spam rules %s cut off by the %.1f s budget for ip=%s",
                ",".join(unfinished),
                settings.timeout,
                ctx.ip,
            )
        ctx.message, ctx._fields = annotated, None  # the other rules are done: nobody reads it now
        for rule in self.spam.after_auth:
            try:
                for h in await rule.check(ctx):
                    hits.setdefault(h.name, h)
            except Exception:
                log.exception("spam rule %s failed for ip=%s", rule.name, ctx.ip)
        ordered = tuple(sorted(hits.values(), key=lambda h: (-abs(h.score), h.name)))
        score = round(sum(h.score for h in ordered), 1)
        action = decide(score, settings)
        metrics.SPAM_VERDICTS.labels("ham" if action is Action.ACCEPT else action.value).inc()
        return Verdict(
            score=score,
            action=action,
            hits=ordered,
            required=settings.junk_threshold,
            unfinished=unfinished,
            elapsed=time.monotonic() - self.started,
        )
