"""The spam-learning bundle a node hands to its faces: the Bayes classifier and the sender lists.

For the scoring pipeline (`Services.learning`, built in `services.build`), per hosted recipient:
- `learning.lists.check(account_id, mail_from) -> Verdict.ALLOW | Verdict.BLOCK | None`
  (an ALLOW is the user's word: not Junk; a BLOCK: Junk);
- `learning.bayes.score(account_id, message_bytes) -> BayesResult | None` (None: disabled or
  not trained enough); a result becomes ``Hit(result.name, result.points, result.reason)``.

`Learning.moved(account_id, messages, src_special, dst_special)` is the one training trigger of
every face (IMAP MOVE/COPY, webmail buttons): it trains what `bayes.training_for_move` says, for at
most `MAX_TRAIN_PER_ACTION` messages per action (a user moving 50 000 messages into Junk at once
trains the first ones, the rest are logged as skipped), and never lets a training failure fail
the user's action (logged instead: the move itself is already committed).

`Learning.judged(account_id, messages, spam)` is the webmail's "Spam" / "Not spam" (issue 14 §4):
it trains each message and, for "Not spam", allow-lists its From address.
"""

from __future__ import annotations

import email.policy
import logging
from collections.abc import Awaitable, Callable, Sequence
from email.parser import BytesParser
from email.utils import getaddresses

from mailhouse.spam.bayes import Bayes, training_for_move
from mailhouse.spam.userlists import UserLists
from mailhouse.store.api import StoreError, TrainKind

log = logging.getLogger(__name__)

MAX_TRAIN_PER_ACTION = 500  # messages trained per MOVE/COPY/button press

# reads at most N octets of one message (the caller's blob access), or None when it is gone
ReadMessage = Callable[[int], Awaitable[bytes | None]]


class Learning:
    def __init__(self, bayes: Bayes, lists: UserLists) -> None:
        self.bayes = bayes
        self.lists = lists

    async def moved(
        self,
        account_id: int,
        messages: Sequence[ReadMessage],
        src_special: str | None,
        dst_special: str | None,
    ) -> int:
        """Train the moved MESSAGES as the move teaches; the number trained."""
        kind = training_for_move(src_special, dst_special)
        if kind is None or not self.bayes.enabled:
            return 0
        return await self.train_all(account_id, messages, kind)

    async def train_all(self, account_id: int, messages: Sequence[ReadMessage], kind: TrainKind) -> int:
        n = 0
        if len(messages) > MAX_TRAIN_PER_ACTION:
            log.info(
                "account %d: training %d of %d messages as %s (limit per action)",
                account_id,
                MAX_TRAIN_PER_ACTION,
                len(messages),
                kind.value,
            )
        for read in messages[:MAX_TRAIN_PER_ACTION]:
            try:
                raw = await read(self.bayes.max_bytes)
                if raw is not None and await self.bayes.learn(account_id, raw, kind):
                    n += 1
            except (StoreError, OSError) as e:
                log.warning("account %d: training as %s failed: %s", account_id, kind.value, e)
            except Exception:  # a tokeniser bug must not fail a move that is already committed
                log.exception("account %d: training as %s failed", account_id, kind.value)
        return n

    async def judged(self, account_id: int, messages: Sequence[ReadMessage], spam: bool) -> int:
        """The user's verdict on MESSAGES: train them; "not spam" also allows their senders."""
        kind = TrainKind.SPAM if spam else TrainKind.HAM
        n = 0
        for read in messages[:MAX_TRAIN_PER_ACTION]:
            try:
                raw = await read(self.bayes.max_bytes)
                if raw is None:
                    continue
                if self.bayes.enabled and await self.bayes.learn(account_id, raw, kind):
                    n += 1
                sender = None if spam else sender_of(raw)
                if sender is not None:
                    await self.lists.allow(account_id, sender)
            except (StoreError, OSError, ValueError) as e:
                log.warning("account %d: verdict %s not learnt: %s", account_id, kind.value, e)
            except Exception:  # as in train_all: the move is already committed
                log.exception("account %d: verdict %s not learnt", account_id, kind.value)
        return n


def sender_of(raw: bytes) -> str | None:
    """The first From address of a message (RFC 5322 §3.6.2), or None."""
    head = raw.split(b"\r\n\r\n", 1)[0][:65536]
    msg = BytesParser(policy=email.policy.compat32).parsebytes(head, headersonly=True)
    for _, addr in getaddresses([str(v) for v in msg.get_all("From", [])]):
        if "@" in addr:
            return addr
    return None
