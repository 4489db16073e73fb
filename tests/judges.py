"""A judge without a model, for ranking and reward orchestration tests: verdicts from hidden strengths.

Every text has a hidden strength; the judge says P(A better) = σ(strength_A − strength_B + bias), with
seeded noise per pair and order (the same pair and order always get the same answer, as with greedy
decoding and the verdict cache). It returns rmjudge's real Judgment and OrderJudgment objects, built
the way Judge builds them (verdict.combine), so ranking code sees exactly what a real judge gives.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator

import numpy as np

from rmjudge.errors import ContextTooLongError, RmjudgeError
from rmjudge.judge import ORDERS, Judgment, OrderJudgment
from rmjudge.prompts import Pair
from rmjudge.verdict import Rationale, combine

META = {"model": {"file": "strengths", "sha256": "0" * 64, "gguf_name": "strengths"}}


class StrengthJudge:
    """``strengths``: text -> hidden strength. ``noise``: sd of the per-order logit noise. ``bias``:
    logit added for whatever is shown first (position bias). ``context``: the most characters a pair's
    two texts may have together (None: no limit). Records each ``judge_many`` call's pairs."""

    def __init__(
        self,
        strengths: dict[str, float],
        *,
        noise: float = 0.0,
        bias: float = 0.0,
        order: str = "both",
        seed: int = 0,
        context: int | None = None,
    ) -> None:
        self.strengths = strengths
        self.noise = noise
        self.bias = bias
        self.order = order
        self.seed = seed
        self.context = context
        self.calls: list[list[Pair]] = []

    def check_fits(self, pair: Pair) -> None:
        if self.context is not None and len(pair.a) + len(pair.b) > self.context:
            raise ContextTooLongError(
                f"the prompt is {len(pair.a) + len(pair.b)} characters, more than {self.context}",
                needed=len(pair.a) + len(pair.b),
                available=self.context,
            )

    def judge_many(self, pairs: Iterable[Pair]) -> Iterator[Judgment | RmjudgeError]:
        batch = list(pairs)
        self.calls.append(batch)
        for pair in batch:
            try:
                self.check_fits(pair)
            except ContextTooLongError as error:
                yield error
                continue
            yield self.judge(pair)

    def judge(self, pair: Pair) -> Judgment:
        orders = [self._order(pair, order) for order in ORDERS[self.order]]
        combined = combine([o.verdict for o in orders], [o.probability_a for o in orders])
        assert combined.probability_a is not None and combined.confidence is not None
        return Judgment(
            winner=combined.winner,
            confidence=combined.confidence,
            consistent=combined.consistent,
            probability_a=combined.probability_a,
            orders=orders,
            meta=META,
        )

    def _noise(self, first: str, second: str) -> float:
        if not self.noise:
            return 0.0
        digest = hashlib.sha256(f"{self.seed}\0{first}\0{second}".encode()).digest()
        return float(np.random.default_rng(list(digest[:8])).normal(0.0, self.noise))

    def _order(self, pair: Pair, order: str) -> OrderJudgment:
        first, second = (pair.a, pair.b) if order == "ab" else (pair.b, pair.a)
        logit = self.strengths[first] - self.strengths[second] + self.bias + self._noise(first, second)
        p_first = 1.0 / (1.0 + math.exp(-logit))
        position_verdict = "A" if p_first >= 0.5 else "B"
        probability_a = p_first if order == "ab" else 1.0 - p_first
        verdict = position_verdict if order == "ab" else {"A": "B", "B": "A"}[position_verdict]
        return OrderJudgment(
            order=order,
            sample=0,
            verdict=verdict,
            position_verdict=position_verdict,
            probability=probability_a if verdict == "A" else 1.0 - probability_a,
            probability_a=probability_a,
            forced=True,
            rationale=Rationale(),
            tokens_in=len(first) + len(second),
            tokens_out=0,
            seconds=0.001,
            stopped_by="none",
            cached=False,
            completion="",
        )
