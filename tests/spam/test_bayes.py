"""The Bayes classifier (spam/bayes.py) and tokeniser (spam/tokens.py) over a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhouse.spam.bayes import Bayes, combine, token_probability, training_for_move
from mailhouse.spam.tokens import MAX_TOKENS, message_key, tokenize
from mailhouse.store import open_store
from mailhouse.store.api import Store, TrainKind
from tests.spam.corpus import corpus


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'mh.db'}", tmp_path)
    await s.open()
    await s.add_domain("example.org")
    try:
        yield s
    finally:
        await s.close()


async def test_classifier_separates_a_generated_corpus(store: Store) -> None:
    acc = (await store.add_account("alice@example.org", "h")).id
    bayes = Bayes(store, min_spam=200, min_ham=200)
    spam, ham = corpus(seed=14, count=260)
    for m in spam[:199]:
        assert await bayes.train(acc, m, spam=True)
    for m in ham[:200]:
        assert await bayes.train(acc, m, spam=False)
    assert await bayes.score(acc, spam[250]) is None  # 199 spam trained: no verdict yet
    assert await bayes.train(acc, spam[199], spam=True)
    assert await store.spam_totals(acc) == (200, 200)
    # held-out messages: each one on the right side with confidence
    right_spam = [
        r for m in spam[200:] if (r := await bayes.score(acc, m)) is not None and r.probability > 0.9
    ]
    right_ham = [r for m in ham[200:] if (r := await bayes.score(acc, m)) is not None and r.probability < 0.1]
    assert len(right_spam) >= 57 and len(right_ham) >= 57, (len(right_spam), len(right_ham))
    r = right_spam[0]
    assert r.name in ("BAYES_99", "BAYES_95") and r.points >= 3.0
    assert "likely spam" in r.reason and any(t in r.reason for t in ("url:", "from-domain:bulk.example"))
    assert right_ham[0].name in ("BAYES_00", "BAYES_01") and right_ham[0].points < 0


async def test_retraining_a_message_moves_it_between_the_totals(store: Store) -> None:
    acc = (await store.add_account("alice@example.org", "h")).id
    bayes = Bayes(store, min_spam=1, min_ham=1)
    spam, ham = corpus(seed=1, count=3)
    assert await bayes.train(acc, spam[0], spam=True)
    assert not await bayes.train(acc, spam[0], spam=True)
    assert await bayes.train(acc, spam[0], spam=False)
    assert await store.spam_totals(acc) == (0, 1)
    assert await bayes.trained_as(acc, spam[0]) is TrainKind.HAM
    assert await bayes.untrain(acc, spam[0])
    assert not await bayes.untrain(acc, spam[0])
    assert await store.spam_totals(acc) == (0, 0)


def test_robinson_and_fisher_arithmetic() -> None:
    assert token_probability(0, 0, 10, 10) == pytest.approx(0.5)
    assert token_probability(10, 0, 10, 10) > 0.97
    assert token_probability(0, 10, 10, 10) < 0.03
    assert combine([]) == 0.5
    assert combine([0.99] * 20) > 0.99
    assert combine([0.01] * 20) < 0.01
    assert combine([0.99, 0.01]) == pytest.approx(0.5)


def test_training_for_moves() -> None:
    assert training_for_move(None, "\\Junk") is TrainKind.SPAM
    assert training_for_move("\\Sent", "\\Junk") is TrainKind.SPAM
    assert training_for_move("\\Junk", None) is TrainKind.HAM
    assert training_for_move("\\Junk", "\\Archive") is TrainKind.HAM
    assert training_for_move("\\Junk", "\\Trash") is None  # deleting spam is no verdict
    assert training_for_move(None, "\\Trash") is None
    assert training_for_move("\\Junk", "\\Junk") is None


def test_tokeniser_decodes_and_bounds() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@Spam.Example>\r\nSubject: =?utf-8?b?Q0hFQVAgUGlsbHM=?=\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b'<a href=3D"http://www.Pills.Example/x">Cl=C3=8FCK here</a>\r\n'
    )
    toks = tokenize(raw)
    assert {"subject:cheap", "subject:pills", "from:jürgen", "from-domain:spam.example"} <= set(toks)
    assert {"url:www.pills.example", "url:pills.example", "clïck", "here"} <= set(toks)
    assert not any("href" in t or "<a" in t for t in toks)
    big = b"Subject: x\r\n\r\n" + b" ".join(b"w%07d" % i for i in range(200_000))
    assert len(tokenize(big)) == MAX_TOKENS
    assert message_key(b"Message-ID: <a@b>\r\nX: 1\r\n\r\nbody") == message_key(
        b"Message-ID: <a@b>\r\n\r\nother"
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_tokeniser_takes_any_octets(raw: bytes) -> None:
    toks = tokenize(b"Content-Type: text/html; charset=x-unknown\r\n" + raw)
    assert len(toks) <= MAX_TOKENS and len(set(toks)) == len(toks)
    assert message_key(raw) == message_key(raw)


def test_tokens_of_raw_utf8_and_encoded_headers() -> None:
    raw = "From: Jürgen <j@x.example>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Köln\r\n\r\nhallo\r\n"
    toks = tokenize(raw.encode())
    assert {"from:jürgen", "subject:grüsse", "subject:köln", "from-domain:x.example", "hallo"} <= set(toks)
