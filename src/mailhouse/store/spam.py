"""Spam-learning rules (Bayes training, sender lists), written once over both backends.

Invariants:
- A message (KEY) counts at most once per account, as spam or as ham: training it as the other
  kind takes the earlier training back (token counts and totals) in the SAME transaction, so a
  message moved into Junk and back out again leaves the counts as if it had only been trained ham.
- Counts never go below zero (a backend clamps), tokens untrained to (0, 0) are dropped.
- Token deltas are sent as one batch per training, one row per distinct token, in token order.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhouse.store.api import ListKind, TrainKind
from mailhouse.store.backend import Tx


async def train_tokens(
    tx: Tx, account_id: int, key: str, tokens: Sequence[int], kind: TrainKind | None
) -> bool:
    prev_s = await tx.spam_trained(account_id, key)
    prev = TrainKind(prev_s) if prev_s is not None else None
    if prev == kind:
        return False
    d_spam = (kind is TrainKind.SPAM) - (prev is TrainKind.SPAM)
    d_ham = (kind is TrainKind.HAM) - (prev is TrainKind.HAM)
    uniq = sorted(set(tokens))
    await tx.add_spam_tokens(account_id, [(t, d_spam, d_ham) for t in uniq])
    await tx.add_spam_totals(account_id, d_spam, d_ham)
    await tx.set_spam_trained(account_id, key, None if kind is None else kind.value)
    return True


async def trained_as(tx: Tx, account_id: int, key: str) -> TrainKind | None:
    v = await tx.spam_trained(account_id, key)
    return None if v is None else TrainKind(v)


async def sender_lists(tx: Tx, account_id: int) -> list[tuple[str, ListKind]]:
    return [(e, ListKind(k)) for e, k in await tx.spam_list_entries(account_id)]


async def sender_list_match(tx: Tx, account_id: int, entries: Sequence[str]) -> dict[str, ListKind]:
    return {e: ListKind(k) for e, k in (await tx.spam_list_kind(account_id, list(entries))).items()}
