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
judgments always give the same report. The fit itself is ``rmjudge.bradley_terry``, the strategies
``rmjudge.rank_strategies``, the records handed back ``rmjudge.ranking``; here: the checks and ``rank``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rmjudge.bradley_terry import BOOTSTRAP, REFERENCE, fit, win_matrix
from rmjudge.errors import InputError, UsageError
from rmjudge.prompts import Message, Pair
from rmjudge.rank_strategies import (
    Match,
    adaptive,
    adaptive_budget,
    against_reference,
    best_first,
    knockout,
    round_robin,
)
from rmjudge.ranking import Comparison, Cost, PairJudge, Ranking

STRATEGIES = ("auto", "round-robin", "reference", "adaptive", "knockout")
OUTCOMES = ("auto", "verdict", "probability")
# Up to 6 candidates all pairs (15) cost no more than adaptive's budget of N log2 N (15.5).
AUTO_ROUND_ROBIN_UP_TO = 6


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
    match = Match(judge, request, candidates, names, reference)
    match.check_fits(_shortest_opponents(candidates, reference))
    single_order = getattr(judge, "order", "both") != "both"
    count = len(candidates)
    reached: list[int] | None = None
    if chosen == "round-robin":
        comparisons, stopped = round_robin(match, single_order)
    elif chosen == "reference":
        comparisons, stopped = against_reference(match)
    elif chosen == "adaptive":
        comparisons, stopped = adaptive(
            match,
            single_order,
            outcome=outcome,
            seed=seed,
            budget=max_comparisons or adaptive_budget(count),
            round_size=round_size or max(2, count // 2),
            confidence=confidence,
        )
    else:
        comparisons, reached = knockout(match, single_order, seed)
        stopped = "complete"
    result = fit(comparisons, count, outcome=outcome, resamples=resamples, seed=seed)
    matrix = win_matrix(comparisons, count)
    order = best_first(result.scores, matrix)
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
