"""Store contract for spam learning (store/spam.py): Bayes token counts, training memory, sender
lists. Runs on both backends (the `store` fixture of test_contract)."""

from __future__ import annotations

from mailhouse.store.api import ListKind, Store, TrainKind
from tests.store.test_contract import _account, store  # noqa: F401  (the fixture)

BIG = 2**62 + 12345  # tokens are 63-bit hashes: the columns must hold them


async def test_training_counts_and_retraining_takes_back(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    toks = [1, 2, 3, BIG, 2]  # duplicates count once
    assert await store.train_tokens(acc, "m1", toks, TrainKind.SPAM)
    assert not await store.train_tokens(acc, "m1", toks, TrainKind.SPAM)  # once per message
    assert await store.spam_totals(acc) == (1, 0)
    assert await store.spam_token_counts(acc, [1, 2, BIG, 99]) == {1: (1, 0), 2: (1, 0), BIG: (1, 0)}
    assert await store.trained_as(acc, "m1") is TrainKind.SPAM
    await store.train_tokens(acc, "m2", [3, 4], TrainKind.HAM)
    # moved out of Junk: m1 becomes ham, its spam training is taken back in the same transaction
    assert await store.train_tokens(acc, "m1", toks, TrainKind.HAM)
    assert await store.spam_totals(acc) == (0, 2)
    assert await store.spam_token_counts(acc, [1, 3, 4, BIG]) == {
        1: (0, 1),
        3: (0, 2),
        4: (0, 1),
        BIG: (0, 1),
    }
    # untrained: tokens at (0, 0) disappear, nothing goes negative
    assert await store.train_tokens(acc, "m1", toks, None)
    assert await store.trained_as(acc, "m1") is None
    assert await store.spam_token_counts(acc, [1, 2, 3, 4]) == {3: (0, 1), 4: (0, 1)}
    assert await store.spam_totals(acc) == (0, 1)


async def test_token_batches_are_large_and_per_account(store: Store) -> None:  # noqa: F811
    a = await _account(store)
    b = await _account(store, "bob@example.org")
    toks = list(range(1, 3001))
    await store.train_tokens(a, "k", toks, TrainKind.SPAM)
    assert len(await store.spam_token_counts(a, toks)) == 3000
    assert await store.spam_token_counts(b, toks) == {}
    assert await store.spam_totals(b) == (0, 0)


async def test_sender_lists(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    assert await store.set_sender_list(acc, "friend@example.net", ListKind.ALLOW)
    assert not await store.set_sender_list(acc, "friend@example.net", ListKind.ALLOW)
    assert await store.set_sender_list(acc, "spam.example", ListKind.BLOCK)
    assert await store.sender_lists(acc) == [
        ("friend@example.net", ListKind.ALLOW),
        ("spam.example", ListKind.BLOCK),
    ]
    assert await store.sender_list_match(acc, ["spam.example", "other.example"]) == {
        "spam.example": ListKind.BLOCK
    }
    assert await store.set_sender_list(acc, "spam.example", ListKind.ALLOW)
    assert await store.set_sender_list(acc, "friend@example.net", None)
    assert await store.sender_lists(acc) == [("spam.example", ListKind.ALLOW)]


async def test_account_removal_drops_its_spam_state(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    await store.train_tokens(acc, "m", [5], TrainKind.SPAM)
    await store.set_sender_list(acc, "x@example.net", ListKind.BLOCK)
    await store.remove_account("alice@example.org")
    acc2 = await _account(store)
    assert await store.spam_totals(acc2) == (0, 0)
