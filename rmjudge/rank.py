"""Best of N from pairwise judgments: which pairs to judge (the strategies), and scores from the verdicts.

A *comparison* is one pair of candidates judged by ``judge.judge_many``, in both orders unless the
judge's ``order`` says otherwise. Strategies decide which comparisons to make:

- ``round-robin``: every pair, N(N-1)/2 comparisons.
- ``reference``: each candidate against one reference text (the candidate shown first), N comparisons.
- ``adaptive``: rounds of several pairs at once (the engine's parallel slots fill), each round where the
  ranking is least certain about the top, at most about N log2 N comparisons, stopping once the top is
  settled. The default above ``AUTO_ROUND_ROBIN_UP_TO`` candidates.
- ``knockout``: a seeded single-elimination bracket, N-1 comparisons; only the first place is meant.

Scores are Bradley-Terry strengths (natural log-odds, mean 0; relative to the reference with
``reference``), fitted by maximum likelihood with a light Gaussian prior so that a candidate that wins
everything stays finite. A comparison counts 1 for its winner and a half each for a tie (the orders
disagree); ``outcome="probability"`` counts the order-averaged P(A better) instead, the default for a
verdict-only judge (budget 0). Intervals come from a bootstrap over the comparisons, seeded, so the same
judgments always give the same report. The fit itself is ``rmjudge.bradley_terry``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rmjudge.bradley_terry import (
    BOOTSTRAP,
    REFERENCE,
    first_share,
    fit,
    fit_bradley_terry,
    hessian,
    win_counts,
    win_matrix,
)
from rmjudge.errors import ContextTooLongError, InputError, RmjudgeError, UsageError
from rmjudge.prompts import Message, Pair

if TYPE_CHECKING:
    from rmjudge.judgment import Judgment

STRATEGIES = ("auto", "round-robin", "reference", "adaptive", "knockout")
OUTCOMES = ("auto", "verdict", "probability")
# Up to 6 candidates all pairs (15) cost no more than adaptive's budget of N log2 N (15.5).
AUTO_ROUND_ROBIN_UP_TO = 6
ADAPTIVE_PRIOR = 1.0  # adaptive's belief: strengths a priori about ±1 log-odds apart, as real candidates are
DRAWS = 2000  # posterior draws per adaptive round


class PairJudge(Protocol):
    """What ranking needs of a judge (``rmjudge.Judge`` has it)."""

    order: str  # "both", "ab" or "ba"

    def judge_many(self, pairs: Iterable[Pair]) -> Iterator[Judgment | RmjudgeError]:
        """Each pair's Judgment, or that pair's own error, in input order."""
        ...

    def check_fits(self, pair: Pair) -> None:
        """Raise ContextTooLongError if ``pair`` cannot be judged."""
        ...


@dataclass(frozen=True)
class Comparison:
    """One judged pair: ``a`` was shown as A, ``b`` as B (``REFERENCE`` for the reference text)."""

    a: int
    b: int
    judgment: Judgment = field(repr=False)

    def outcome(self, outcome: str = "verdict") -> float:
        """How much of a win this comparison counts for ``a``: 1, 0.5 (tie) or 0; or P(a better)."""
        if outcome == "probability":
            return self.judgment.probability_a
        return {"A": 1.0, "B": 0.0}.get(self.judgment.winner, 0.5)

    @property
    def winner(self) -> int | None:
        """The winning index (``REFERENCE`` for the reference), None for a tie."""
        return {"A": self.a, "B": self.b}.get(self.judgment.winner)

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        judgment = self.judgment
        data: dict[str, Any] = {
            "a": _index_json(self.a),
            "b": _index_json(self.b),
            "winner": "tie" if self.winner is None else _index_json(self.winner),
            "probability_a": judgment.probability_a,
            "consistent": judgment.consistent,
            "forced": judgment.forced,
            "cached": all(order.cached for order in judgment.orders),
            "tokens_out": sum(order.tokens_out for order in judgment.orders),
            "seconds": sum(order.seconds for order in judgment.orders),
        }
        if raw:
            data["orders"] = [order.to_dict(raw=True) for order in judgment.orders]
        return data


def _index_json(index: int) -> int | str:
    return "reference" if index == REFERENCE else index


@dataclass(frozen=True)
class Cost:
    """What a ranking took. ``seconds`` sums the judge's time per order (overlapping when batched)."""

    comparisons: int = 0  # pairs judged
    judgments: int = 0  # order judgments: two per comparison with both orders
    cached: int = 0  # order judgments that came from the verdict cache
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0  # the whole ranking, fitting included

    @classmethod
    def of(cls, comparisons: Sequence[Comparison], wall_seconds: float) -> Cost:
        orders = [order for c in comparisons for order in c.judgment.orders]
        return cls(
            comparisons=len(comparisons),
            judgments=len(orders),
            cached=sum(order.cached for order in orders),
            tokens_in=sum(order.tokens_in for order in orders),
            tokens_out=sum(order.tokens_out for order in orders),
            seconds=sum(order.seconds for order in orders),
            wall_seconds=wall_seconds,
        )


@dataclass(frozen=True)
class Ranking:
    """Candidates ordered best first, with the evidence. Lists other than ``order`` are by candidate index."""

    strategy: str
    outcome: str  # what a comparison counted for: "verdict" (1, 0.5 or 0) or "probability" (P(A better))
    names: list[str]
    order: list[int]  # candidate indices, best first
    scores: list[float]  # Bradley-Terry strength (log-odds; mean 0, or the reference's 0)
    intervals: list[tuple[float, float]]  # 95% bootstrap interval of each score
    top_probability: list[float]  # share of bootstrap fits in which the candidate comes first
    win_matrix: list[list[float | None]]  # mean P(row beats column); None: never compared
    comparisons: list[Comparison]
    cost: Cost
    stopped: str  # "complete" (every planned comparison made), "settled", "budget" (adaptive)
    reference_probability: list[float] | None = None  # ``reference``: P(candidate beats the reference)

    @property
    def best(self) -> int:
        return self.order[0]

    @property
    def possible_comparisons(self) -> int:
        n = len(self.names)
        return n if self.strategy == "reference" else n * (n - 1) // 2

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        rows = []
        for place, index in enumerate(self.order, start=1):
            row: dict[str, Any] = {
                "rank": place,
                "index": index,
                "name": self.names[index],
                "score": self.scores[index],
                "interval": list(self.intervals[index]),
                "top_probability": self.top_probability[index],
            }
            if self.reference_probability is not None:
                row["reference_probability"] = self.reference_probability[index]
            rows.append(row)
        meta = self.comparisons[0].judgment.meta if self.comparisons else {}
        return {
            "strategy": self.strategy,
            "outcome": self.outcome,
            "best": self.best,
            "order": self.order,
            "ranking": rows,
            "stopped": self.stopped,
            "win_matrix": self.win_matrix,
            "comparisons": [c.to_dict(raw) for c in self.comparisons],
            "cost": {**vars(self.cost), "possible_comparisons": self.possible_comparisons},
            **meta,
        }


# -- validation --------------------------------------------------------------------------------


def check_candidates(candidates: Sequence[str], names: Sequence[str], reference: str | None = None) -> None:
    """One-line errors for what cannot be ranked: fewer than two, an empty or a duplicate candidate."""
    if len(candidates) < 2:
        raise UsageError(f"ranking needs at least two candidates, got {len(candidates)}: give two or more")
    seen: dict[str, str] = {}
    for text, name in zip(candidates, names):
        if not text.strip():
            raise InputError(f"{name} is empty: remove it or give it a text")
        if text.strip() in seen:
            raise InputError(f"{name} is the same text as {seen[text.strip()]}: give each candidate once")
        seen[text.strip()] = name
    if reference is not None and not reference.strip():
        raise InputError("the reference is empty: give a reference text")


def default_names(count: int) -> list[str]:
    return [f"candidates[{index}]" for index in range(count)]


def check_options(strategy: str = "auto", outcome: str = "auto", max_comparisons: int | None = None) -> None:
    """The options that hold for every ranking of a run, checked once before any."""
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if outcome not in OUTCOMES:
        raise UsageError(f"--outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
    if max_comparisons is not None and max_comparisons < 1:
        raise UsageError("--max-comparisons must be 1 or more")


def choose_strategy(strategy: str, count: int, reference: str | None) -> str:
    """``auto``: the reference strategy when there is one, else all pairs for a few candidates, else adaptive."""
    check_options(strategy)
    if strategy == "auto":
        if reference is not None:
            return "reference"
        return "round-robin" if count <= AUTO_ROUND_ROBIN_UP_TO else "adaptive"
    if strategy == "reference" and reference is None:
        raise UsageError("--strategy reference needs a reference text: give --reference FILE")
    if strategy != "reference" and reference is not None:
        raise UsageError(f"a reference is used only by --strategy reference, not {strategy}: drop one of them")
    return strategy


def choose_outcome(outcome: str, judge: PairJudge) -> str:
    """``auto``: the probability for a verdict-only judge (budget 0: the verdict is nothing but the
    larger of the two probabilities, so the probability is all the information there is), else the verdict."""
    check_options(outcome=outcome)
    if outcome == "auto":
        return "probability" if getattr(judge, "max_tokens", None) == 0 else "verdict"
    return outcome


# -- judging -----------------------------------------------------------------------------------


class _Match:
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


def _order(scores: np.ndarray, matrix: list[list[float | None]]) -> list[int]:
    """Best first by score; equal scores by the mean P(beats) over the opponents met, then by index."""

    def mean_win(index: int) -> float:
        known = [p for p in matrix[index] if p is not None]
        return sum(known) / len(known) if known else 0.5

    return sorted(range(len(scores)), key=lambda i: (-round(float(scores[i]), 9), -mean_win(i), i))


# -- strategies --------------------------------------------------------------------------------


def _round_robin(match: _Match, single_order: bool) -> tuple[list[Comparison], str]:
    count = len(match.candidates)
    pairs = [_shown(a, b, single_order) for a in range(count) for b in range(a + 1, count)]
    return match.judge_all(pairs), "complete"


def _against_reference(match: _Match) -> tuple[list[Comparison], str]:
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
        leader = _order(fit_bradley_terry(wins), win_matrix(comparisons, count))[0]
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


def _adaptive(
    match: _Match,
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


def _knockout(match: _Match, single_order: bool, seed: int) -> tuple[list[Comparison], list[int]]:
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


# -- ranking -----------------------------------------------------------------------------------


def rank(
    judge: PairJudge,
    question: str | None,
    candidates: Sequence[str],
    *,
    strategy: str = "auto",
    reference: str | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
    conversation: Sequence[Message] = (),
    outcome: str = "auto",
    max_comparisons: int | None = None,
    round_size: int | None = None,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP,
) -> Ranking:
    """Order ``candidates`` (answers to ``question``) best first with pairwise judgments.

    ``names`` label candidates in errors and reports (default ``candidates[i]``). ``conversation``
    gives earlier turns for a multi-turn request (ending with the user's last turn) instead of a
    question. ``adaptive`` takes ``max_comparisons`` (default about N log2 N), ``round_size`` pairs
    per round (default N/2) and stops when the leader is first in ``confidence`` of the bootstrap
    fits or has beaten every other plausible first face to face.

    Raises UsageError (fewer than two candidates, a bad option), InputError (an empty or duplicate
    candidate) and ContextTooLongError (a candidate too long for the model), before any judging.
    """
    started = time.perf_counter()
    names = list(names) if names is not None else default_names(len(candidates))
    check_options(strategy, outcome, max_comparisons)
    outcome = choose_outcome(outcome, judge)
    check_candidates(candidates, names, reference)
    chosen = choose_strategy(strategy, len(candidates), reference)
    request = Pair(a="", b="", question=question, conversation=tuple(conversation))
    match = _Match(judge, request, candidates, names, reference)
    match.check_fits(_shortest_opponents(candidates, reference))
    single_order = getattr(judge, "order", "both") != "both"
    count = len(candidates)
    reached: list[int] | None = None
    if chosen == "round-robin":
        comparisons, stopped = _round_robin(match, single_order)
    elif chosen == "reference":
        comparisons, stopped = _against_reference(match)
    elif chosen == "adaptive":
        comparisons, stopped = _adaptive(
            match,
            single_order,
            outcome=outcome,
            seed=seed,
            budget=max_comparisons or adaptive_budget(count),
            round_size=round_size or max(2, count // 2),
            confidence=confidence,
        )
    else:
        comparisons, reached = _knockout(match, single_order, seed)
        stopped = "complete"
    result = fit(comparisons, count, outcome=outcome, resamples=resamples, seed=seed)
    matrix = win_matrix(comparisons, count)
    order = _order(result.scores, matrix)
    if reached is not None:
        order.sort(key=lambda i: -reached[i])  # stable: by score within a round
    return Ranking(
        strategy=chosen,
        outcome=outcome,
        names=names,
        order=order,
        scores=[float(s) for s in result.scores],
        intervals=[(float(low), float(high)) for low, high in result.intervals],
        top_probability=[float(p) for p in result.top_probability],
        win_matrix=matrix,
        comparisons=comparisons,
        cost=Cost.of(comparisons, time.perf_counter() - started),
        stopped=stopped,
        reference_probability=_reference_probabilities(comparisons, count) if chosen == "reference" else None,
    )


def _shortest_opponents(candidates: Sequence[str], reference: str | None) -> list[int]:
    if reference is not None:
        return [REFERENCE] * len(candidates)
    by_length = sorted(range(len(candidates)), key=lambda i: len(candidates[i]))
    shortest, second = by_length[0], by_length[1]
    return [second if index == shortest else shortest for index in range(len(candidates))]


def _reference_probabilities(comparisons: Sequence[Comparison], count: int) -> list[float]:
    probability = [0.5] * count
    for comparison in comparisons:
        probability[comparison.a] = comparison.judgment.probability_a
    return probability
