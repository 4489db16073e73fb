"""The ranking strategies: which pairs of candidates to judge (round-robin, reference, adaptive,
knockout), and ``Match``, which turns index pairs into judged ``Comparison``s for one question."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from rmjudge.bradley_terry import REFERENCE, first_share, fit_bradley_terry, hessian, win_counts, win_matrix
from rmjudge.errors import ContextTooLongError, RmjudgeError
from rmjudge.prompts import Pair
from rmjudge.ranking import Comparison, PairJudge

ADAPTIVE_PRIOR = 1.0  # adaptive's belief: strengths a priori about ±1 log-odds apart, as real candidates are
DRAWS = 2000  # posterior draws per adaptive round


class Match:
    """Turns index pairs into Pairs for one question, judges them in one stream, names failures."""

    def __init__(
        self,
        judge: PairJudge,
        request: Pair,
        candidates: Sequence[str],
        names: Sequence[str],
        reference: str | None,
    ) -> None:
        self.judge = judge
        self.request = request
        self.candidates = candidates
        self.names = names
        self.reference = reference

    def text(self, index: int) -> str:
        if index == REFERENCE:
            assert self.reference is not None
            return self.reference
        return self.candidates[index]

    def name(self, index: int) -> str:
        return "the reference" if index == REFERENCE else self.names[index]

    def pair(self, a: int, b: int) -> Pair:
        return replace(self.request, a=self.text(a), b=self.text(b))

    def check_fits(self, opponent_of: Sequence[int]) -> None:
        """Each candidate must fit the context beside its shortest possible opponent. The longest are
        checked first: when the shortest and the second shortest do not fit, it is the second's fault."""
        for index in sorted(range(len(opponent_of)), key=lambda i: -len(self.candidates[i])):
            opponent = opponent_of[index]
            try:
                self.judge.check_fits(self.pair(index, opponent))
            except ContextTooLongError as error:
                raise ContextTooLongError(
                    f"{self.names[index]} is too long: {error}", needed=error.needed, available=error.available
                ) from None

    def judge_all(self, index_pairs: Sequence[tuple[int, int]]) -> list[Comparison]:
        """Judge every pair in one ``judge_many`` stream, so the engine can run them side by side."""
        comparisons = []
        results = self.judge.judge_many(self.pair(a, b) for a, b in index_pairs)
        try:
            for (a, b), result in zip(index_pairs, results, strict=True):
                if isinstance(result, ContextTooLongError):
                    raise ContextTooLongError(
                        f"{self.name(a)} and {self.name(b)} together are too long: {result}",
                        needed=result.needed,
                        available=result.available,
                    )
                if isinstance(result, RmjudgeError):
                    raise result
                comparisons.append(Comparison(a, b, result))
        finally:
            # Stopping early: the stream ends now (its engine run too), not whenever it is collected.
            close = getattr(results, "close", None)
            if close is not None:
                close()
        return comparisons


def _shown(a: int, b: int, single_order: bool) -> tuple[int, int]:
    """Which of two candidates is shown first. With one order only, alternate by the pair so that
    position bias falls on every candidate about equally; both orders make it irrelevant."""
    low, high = min(a, b), max(a, b)
    return (high, low) if single_order and (low + high) % 2 else (low, high)


def best_first(scores: np.ndarray, matrix: list[list[float | None]]) -> list[int]:
    """Best first by score; equal scores by the mean P(beats) over the opponents met, then by index."""

    def mean_win(index: int) -> float:
        known = [p for p in matrix[index] if p is not None]
        return sum(known) / len(known) if known else 0.5

    return sorted(range(len(scores)), key=lambda i: (-round(float(scores[i]), 9), -mean_win(i), i))


def round_robin(match: Match, single_order: bool) -> tuple[list[Comparison], str]:
    count = len(match.candidates)
    pairs = [_shown(a, b, single_order) for a in range(count) for b in range(a + 1, count)]
    return match.judge_all(pairs), "complete"


def against_reference(match: Match) -> tuple[list[Comparison], str]:
    # The candidate is always shown first: any position bias is the same for every candidate.
    return match.judge_all([(index, REFERENCE) for index in range(len(match.candidates))]), "complete"


def adaptive_budget(count: int) -> int:
    """About N log2 N comparisons, never more than all pairs."""
    return min(count * (count - 1) // 2, math.ceil(count * math.log2(max(count, 2))))


def _first_round(count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A random matching: every candidate meets one other (an odd one out meets the first of the others)."""
    shuffled = [int(i) for i in rng.permutation(count)]
    pairs = [(shuffled[i], shuffled[i + 1]) for i in range(0, count - 1, 2)]
    if count % 2:
        pairs.append((shuffled[-1], shuffled[0]))
    return pairs


@dataclass(frozen=True)
class _Belief:
    """What the comparisons so far say, as draws of the strengths from the Laplace approximation of
    the posterior: cheap enough to recompute every round, unlike a bootstrap."""

    leader: int
    samples: np.ndarray  # draw x candidate
    top_probability: np.ndarray

    @classmethod
    def of(cls, comparisons: Sequence[Comparison], count: int, outcome: str, rng: np.random.Generator) -> _Belief:
        prior = ADAPTIVE_PRIOR
        wins = win_counts(comparisons, count, outcome)
        theta = fit_bradley_terry(wins, prior=prior)
        covariance = np.linalg.inv(hessian(theta, wins, prior))
        samples = rng.multivariate_normal(theta, covariance, size=DRAWS, method="cholesky")
        # The leader as the final report will have it (its lighter prior), so a settled top is the reported one.
        leader = best_first(fit_bradley_terry(wins), win_matrix(comparisons, count))[0]
        return cls(leader, samples, first_share(samples))


def _settled(leader: int, top: np.ndarray, comparisons: Sequence[Comparison], outcome: str, rival: float) -> bool:
    """The top is settled when the leader is first in all but ``rival`` of the posterior draws, or has
    beaten, face to face, every candidate still first in more than ``rival`` of them."""
    if top[leader] >= 1.0 - rival:
        return True
    beaten = {c.b for c in comparisons if c.a == leader and c.outcome(outcome) > 0.5}
    beaten |= {c.a for c in comparisons if c.b == leader and c.outcome(outcome) < 0.5}
    return all(top[k] <= rival or k in beaten for k in range(len(top)) if k != leader)


def _next_pairs(
    current: _Belief, judged: set[tuple[int, int]], size: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """The ``size`` unjudged pairs where the order is least certain, weighted by how likely either
    candidate is to be first: 4 f (1 - f) (P(first_i) + P(first_j)), f the share of draws with i ahead of j."""
    samples = current.samples
    count = samples.shape[1]
    ahead = (samples[:, :, None] > samples[:, None, :]).mean(axis=0)
    ahead += 0.5 * (samples[:, :, None] == samples[:, None, :]).mean(axis=0)
    scored = []
    for i in range(count):
        for j in range(i + 1, count):
            if (i, j) in judged:
                continue
            doubt = 4.0 * ahead[i, j] * (1.0 - ahead[i, j])
            priority = doubt * (current.top_probability[i] + current.top_probability[j])
            if priority > 1e-9:
                scored.append((priority, float(rng.random()), i, j))
    scored.sort(reverse=True)
    return [(i, j) for _, _, i, j in scored[:size]]


def adaptive(
    match: Match,
    single_order: bool,
    *,
    outcome: str,
    seed: int,
    budget: int,
    round_size: int,
    confidence: float,
) -> tuple[list[Comparison], str]:
    count = len(match.candidates)
    rng = np.random.default_rng([seed, count])
    pairs = _first_round(count, rng)[:budget]
    comparisons: list[Comparison] = []
    judged: set[tuple[int, int]] = set()
    for _ in range(budget):
        comparisons += match.judge_all([_shown(a, b, single_order) for a, b in pairs])
        judged |= {(min(a, b), max(a, b)) for a, b in pairs}
        current = _Belief.of(comparisons, count, outcome, rng)
        if _settled(current.leader, current.top_probability, comparisons, outcome, 1.0 - confidence):
            return comparisons, "settled"
        if len(comparisons) >= budget:
            return comparisons, "budget"
        pairs = _next_pairs(current, judged, min(round_size, budget - len(comparisons)), rng)
        if not pairs:
            # Every pair left is between candidates no resample puts first: nothing left to learn about the top.
            return comparisons, "settled"
    return comparisons, "budget"


def knockout(match: Match, single_order: bool, seed: int) -> tuple[list[Comparison], list[int]]:
    """Single elimination over a seeded bracket. Returns the comparisons and, per candidate, the
    round it reached (the champion's is one more than any other's)."""
    count = len(match.candidates)
    rng = np.random.default_rng([seed, count])
    alive = [int(i) for i in rng.permutation(count)]
    reached = [0] * count
    comparisons: list[Comparison] = []
    stage = 0
    while len(alive) > 1:
        stage += 1
        pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
        bye = alive[-1:] if len(alive) % 2 else []
        played = match.judge_all([_shown(a, b, single_order) for a, b in pairs])
        comparisons += played
        alive = [_knockout_winner(c) for c in played] + bye
        for index in alive:
            reached[index] = stage
    return comparisons, reached


def _knockout_winner(comparison: Comparison) -> int:
    """The winner, and for a tie whoever the averaged probability favours (A when exactly even)."""
    if comparison.winner is not None:
        return comparison.winner
    return comparison.a if comparison.judgment.probability_a >= 0.5 else comparison.b
