"""The per-user parts of the spam pipeline as one rule (issue 14 §3): each local recipient's
sender lists (`spam.userlists`) and Bayes classifier (`spam.bayes`), as `Hit`s with reasons.

A verdict is per message (one `550` or one Junk decision for every recipient), while lists and
classifiers are per account. The rule therefore asks each local recipient's account, at most
`MAX_ACCOUNTS` of them:
- a sender every asked recipient allows → ``USER_ALLOWED`` (``ALLOW_SCORE``); a sender any of
  them blocks → ``USER_BLOCKED`` (``BLOCK_SCORE``: Junk at the default thresholds, not a refusal —
  a user's list is not a reason to bounce the sender);
- the first recipient whose classifier is trained enough gives ``BAYES_xx`` with its points and
  the tokens that weighed most (SpamAssassin's BAYES bands).
Recipients that are not local accounts (relay, remote aliases) are skipped. At most
`tokens.MAX_BYTES` of the message are read, in a worker thread when it is on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mailhouse.spam.bayes import Bayes
from mailhouse.spam.rules import Context, Hit
from mailhouse.spam.tokens import MAX_BYTES
from mailhouse.spam.userlists import UserLists, Verdict

MAX_ACCOUNTS = 5  # local recipients asked per message
ALLOW_SCORE = -20.0
BLOCK_SCORE = 10.0

AccountOf = Callable[[str], Awaitable[int | None]]  # a recipient address → its account id, or None


def _prefix(ctx: Context) -> bytes:
    """The header section and the start of the body: what the tokeniser reads at most."""
    out = bytearray(ctx.message.head)
    for chunk in ctx.message.body_chunks():
        out += chunk
        if len(out) >= MAX_BYTES:
            break
    return bytes(out[:MAX_BYTES])


class LearnedRule:
    """Sender lists and Bayes of the recipients' accounts (the pipeline's Bayes slot)."""

    name = "LEARNED"

    def __init__(self, lists: UserLists, bayes: Bayes, account_of: AccountOf) -> None:
        self.lists = lists
        self.bayes = bayes
        self.account_of = account_of

    async def check(self, ctx: Context) -> list[Hit]:
        accounts: list[int] = []
        for rcpt in ctx.recipients:
            acc = await self.account_of(rcpt)
            if acc is not None and acc not in accounts:
                accounts.append(acc)
            if len(accounts) >= MAX_ACCOUNTS:
                break
        if not accounts:
            return []
        hits: list[Hit] = []
        verdicts = [await self.lists.check(a, ctx.mail_from) for a in accounts]
        if Verdict.BLOCK in verdicts:
            hits.append(Hit("USER_BLOCKED", BLOCK_SCORE, "The sender is on the recipient's block list"))
        elif all(v is Verdict.ALLOW for v in verdicts):
            hits.append(
                Hit(
                    "USER_ALLOWED",
                    ALLOW_SCORE,
                    "The recipient allows this sender (wrote to it, or 'Not spam')",
                )
            )
        if not self.bayes.enabled:
            return hits
        msg = ctx.message
        data = _prefix(ctx) if msg.in_memory else await asyncio.to_thread(_prefix, ctx)
        for acc in accounts:
            res = await self.bayes.score(acc, data)
            if res is not None:
                hits.append(Hit(res.name, res.points, res.reason))
                break
        return hits
