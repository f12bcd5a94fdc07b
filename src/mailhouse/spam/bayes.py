"""Per-user Bayesian spam classifier: Robinson's token probabilities, Fisher's chi-square combining.

The method of SpamBayes (and SpamAssassin's Bayes, Rspamd's classifier): for each token w of a
message, with s(w)/h(w) the spam/ham messages of the account that contained it and S/H the
account's trained totals,

    p(w) = (s/S) / (s/S + h/H)                          Graham's ratio, per message counts
    f(w) = (STRENGTH * X + n * p(w)) / (STRENGTH + n)   Robinson: n = s + h, shrunk towards X = 0.5

the `MAX_CLUES` tokens with |f(w) - 0.5| ≥ `MIN_STRENGTH` are combined by Fisher's method:

    S = 1 - chi2Q(-2 Σ ln(1 - f), 2n),  H = 1 - chi2Q(-2 Σ ln f, 2n),  P(spam) = (1 + S - H) / 2

Entry points for the scoring pipeline and the training triggers:
- `Bayes.score(account_id, message) -> BayesResult | None`: None while the account has fewer
  than `min_spam` spam or `min_ham` ham messages trained (no verdict from too little data);
  `BayesResult.name`/`.points`/`.reason` are ready to become a pipeline Hit (SpamAssassin's
  BAYES_00…BAYES_99 bands).
- `Bayes.train(account_id, message, spam=True|False)` and `Bayes.untrain(account_id, message)`:
  one store transaction each; a message counts once, and retraining it as the other kind takes
  the first training back (`store/spam.py`).
- `training_for_move(src, dst)`: what moving a message between two special-use mailboxes teaches.

Invariants: at most `tokens.MAX_BYTES` octets of a message are read or parsed; tokenising a
message bigger than `INLINE_BYTES` runs on this classifier's bounded thread pool, never on the
event loop; token counts live in the store (shared by every node), nothing in this object but
its configuration and the pool.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailhouse.spam.tokens import MAX_BYTES, message_key, token_hash, tokenize
from mailhouse.store.api import SpamLearning, TrainKind

STRENGTH = 0.45  # SpamBayes unknown_word_strength: how strongly an unseen token sits at X
X = 0.5  # SpamBayes unknown_word_prob
MIN_STRENGTH = 0.1  # SpamBayes minimum_prob_strength: tokens nearer 0.5 carry no evidence
MAX_CLUES = 150  # SpamBayes max_discriminators
REASON_TOKENS = 5  # most significant tokens named in the reason
INLINE_BYTES = 32 * 1024  # messages up to this size are tokenised on the loop (sub-millisecond)
POOL_THREADS = 2  # tokenising threads per classifier (per node)

# SpamAssassin's Bayes bands (50_scores.cf, network-less defaults rounded): probability floor → points
BANDS: tuple[tuple[float, str, float], ...] = (
    (0.99, "BAYES_99", 3.5),
    (0.95, "BAYES_95", 3.0),
    (0.80, "BAYES_80", 2.0),
    (0.60, "BAYES_60", 1.5),
    (0.40, "BAYES_50", 0.8),
    (0.20, "BAYES_20", -0.001),
    (0.05, "BAYES_05", -0.5),
    (0.01, "BAYES_01", -1.5),
    (0.0, "BAYES_00", -1.9),
)


@dataclass(frozen=True, slots=True)
class BayesResult:
    """A verdict: P(spam) and the tokens that weighed most, (token, f(w)), strongest first."""

    probability: float
    clues: tuple[tuple[str, float], ...]

    @property
    def name(self) -> str:  # the pipeline rule name, e.g. "BAYES_99"
        return next(n for floor, n, _ in BANDS if self.probability >= floor)

    @property
    def points(self) -> float:  # the score the pipeline adds
        return next(p for floor, _, p in BANDS if self.probability >= floor)

    @property
    def reason(self) -> str:
        words = ", ".join(f"{t!r} {p:.2f}" for t, p in self.clues[:REASON_TOKENS])
        return f"Bayes: {self.probability:.0%} likely spam from your training ({words})"


def chi2q(x2: float, v: int) -> float:
    """P(chi² with V (even) degrees of freedom ≥ X2): the upper tail, as SpamBayes' chi2Q."""
    m = x2 / 2.0
    term = math.exp(-m)
    total = term
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def token_probability(s: int, h: int, nspam: int, nham: int) -> float:
    """Robinson's f(w) for a token seen in S spam and H ham of NSPAM/NHAM trained messages."""
    sr = s / max(nspam, 1)
    hr = h / max(nham, 1)
    p = sr / (sr + hr) if sr + hr > 0 else X
    n = s + h
    return (STRENGTH * X + n * p) / (STRENGTH + n)


def combine(probs: Sequence[float]) -> float:
    """Fisher/Robinson chi-square combining of token probabilities into P(spam)."""
    if not probs:
        return 0.5
    n = len(probs)
    ln_h = sum(math.log(max(p, 1e-200)) for p in probs)
    ln_s = sum(math.log(max(1.0 - p, 1e-200)) for p in probs)
    s = 1.0 - chi2q(-2.0 * ln_s, 2 * n)
    h = 1.0 - chi2q(-2.0 * ln_h, 2 * n)
    return (s - h + 1.0) / 2.0


def classify(tokens: Sequence[str], counts: dict[int, tuple[int, int]], nspam: int, nham: int) -> BayesResult:
    """The verdict for TOKENS given the account's COUNTS (token hash → (spam, ham))."""
    scored: list[tuple[float, str, float]] = []
    for t in tokens:
        c = counts.get(token_hash(t))
        if c is None:
            continue
        f = token_probability(c[0], c[1], nspam, nham)
        strength = abs(f - 0.5)
        if strength >= MIN_STRENGTH:
            scored.append((strength, t, f))
    scored.sort(key=lambda x: (-x[0], x[1]))
    clues = scored[:MAX_CLUES]
    return BayesResult(combine([f for _, _, f in clues]), tuple((t, f) for _, t, f in clues))


def training_for_move(src_special: str | None, dst_special: str | None) -> TrainKind | None:
    """What a user moving (or copying) a message from SRC to DST (their special-use flags,
    RFC 6154) teaches: into \\Junk = spam; out of \\Junk into anything but \\Trash = ham."""
    if dst_special == "\\Junk" and src_special != "\\Junk":
        return TrainKind.SPAM
    if src_special == "\\Junk" and dst_special not in ("\\Junk", "\\Trash"):
        return TrainKind.HAM
    return None


class Bayes:
    """The classifier of one node: configuration + store + a bounded tokenising pool."""

    def __init__(self, store: SpamLearning, *, enabled: bool = True, min_spam: int = 200, min_ham: int = 200):
        self.store = store
        self.enabled = enabled
        self.min_spam = min_spam
        self.min_ham = min_ham
        self.max_bytes = MAX_BYTES  # octets of a message callers need to read
        self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="bayes")

    async def tokens(self, message: bytes) -> list[str]:
        raw = message[:MAX_BYTES]
        if len(raw) <= INLINE_BYTES:
            return tokenize(raw)
        return await asyncio.get_running_loop().run_in_executor(self._pool, tokenize, raw)

    async def score(self, account_id: int, message: bytes) -> BayesResult | None:
        """P(spam) of MESSAGE for the account, or None (disabled, or not trained enough yet)."""
        if not self.enabled:
            return None
        nspam, nham = await self.store.spam_totals(account_id)
        if nspam < self.min_spam or nham < self.min_ham or nspam == 0 or nham == 0:
            return None
        toks = await self.tokens(message)
        counts = await self.store.spam_token_counts(account_id, [token_hash(t) for t in toks])
        return classify(toks, counts, nspam, nham)

    async def learn(self, account_id: int, message: bytes, kind: TrainKind | None) -> bool:
        """Train MESSAGE as KIND (None: untrain); False when it was trained so already."""
        raw = message[:MAX_BYTES]
        key = message_key(raw)
        if kind is None and await self.store.trained_as(account_id, key) is None:
            return False
        toks = await self.tokens(raw)
        return await self.store.train_tokens(account_id, key, [token_hash(t) for t in toks], kind)

    async def train(self, account_id: int, message: bytes, spam: bool) -> bool:
        return await self.learn(account_id, message, TrainKind.SPAM if spam else TrainKind.HAM)

    async def untrain(self, account_id: int, message: bytes) -> bool:
        return await self.learn(account_id, message, None)

    async def trained_as(self, account_id: int, message: bytes) -> TrainKind | None:
        return await self.store.trained_as(account_id, message_key(message[:MAX_BYTES]))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
