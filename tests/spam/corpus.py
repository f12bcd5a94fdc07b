"""A small generated corpus for the Bayes tests: spam-like and ham-like messages drawn from
overlapping vocabularies (common words in both, so a classifier must weigh, not just look up)."""

from __future__ import annotations

import random

COMMON = "the and for you with this that have from your will are our all not about more".split()
SPAMMY = (
    "viagra cheap pills winner lottery claim prize casino bonus offer unsubscribe free money "
    "bitcoin investment guaranteed discount pharmacy replica watches credit loan urgent"
).split()
HAMMY = (
    "meeting agenda minutes project review deadline report budget schedule lunch tomorrow "
    "attached draft comments release notes patch build server kernel holiday family"
).split()
SPAM_HOSTS = ["pills.example", "win-now.example", "cheap-meds.example"]
HAM_HOSTS = ["docs.example.org", "git.example.org", "wiki.example.org"]


def message(rng: random.Random, spam: bool, n: int) -> bytes:
    vocab = SPAMMY if spam else HAMMY
    # a fifth of the topical words come from the other side: the corpus is not trivially separable
    other = HAMMY if spam else SPAMMY
    words = [
        rng.choice(COMMON) if rng.random() < 0.5 else rng.choice(other if rng.random() < 0.2 else vocab)
        for _ in range(60)
    ]
    subject = " ".join(rng.choice(vocab) for _ in range(3))
    host = rng.choice(SPAM_HOSTS if spam else HAM_HOSTS)
    sender = (
        f"{'promo' if spam else 'colleague'}{rng.randrange(50)}@{'bulk.example' if spam else 'example.org'}"
    )
    body = " ".join(words) + f"\r\nhttps://{host}/{rng.randrange(10**6)}\r\n"
    return (
        f"From: {sender}\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{'s' if spam else 'h'}{n}.{rng.randrange(10**9)}@gen.example>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def corpus(seed: int, count: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    return [message(rng, True, i) for i in range(count)], [message(rng, False, i) for i in range(count)]
