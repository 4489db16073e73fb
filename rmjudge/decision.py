"""Decide a pair's winner from its readings: every order the pair was shown in, every sample of each.

A reading (``Trace``) is one reasoning trace of one order: its verdict and its P(A better), both in
the user's labels (the ``ba`` order already mapped back). Two rules turn the readings into a winner:

- ``agreement`` (rmjudge 0.1's rule, ``verdict.combine``): each order's verdict is the majority of its
  samples' verdicts (one sample: its verdict; an even split: the side its mean P(A better) favours,
  undecided at exactly 0.5). The orders must agree, else the answer is a tie. A position-biased judge
  (one that picks whatever it is shown first) therefore answers a tie on most pairs, however lopsided
  its probabilities were.
- ``probability``: the winner is the side the mean P(A better) over every reading favours (the mean
  over the orders, and over the samples of each). Averaging over both orders cancels a position bias
  (AlpacaEval's weighted judge, PORTIA). A tie only when that mean is within ``tie_margin`` of 0.5
  (inclusive: a mean of exactly 0.5 is a tie even with margin 0).

Whatever the rule: ``probability_a`` is the mean P(A better) over every reading; ``confidence`` is
the winner's probability (P(A) for A, 1 - P(A) for B) and, for a tie, how close that mean is to even
(1.0 when the readings cancel out exactly); ``consistent`` means every reading gave the same verdict;
``votes`` counts the readings' verdicts.

Nothing here runs a model: the verdict cache stores the readings, and the decision is recomputed from
them, so a cached pair can be decided under either rule without generating again.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rmjudge.errors import UsageError

RULES = ("agreement", "probability")
# Picked by measurement (bench/bench_decide.py, notes/decide.md): on real labelled pairs the
# stand-in judge flips its verdict between orders on most pairs, and the mean probability recovers
# most of those pairs' winners where agreement answers a tie.
DEFAULT_RULE = "probability"
DEFAULT_TIE_MARGIN = 0.0
MAX_SAMPLES = 64  # more traces per order than anyone can afford to wait for: most likely a typo


@dataclass(frozen=True)
class Trace:
    """One reading of a pair: one sample of one order, in the user's labels."""

    order: str  # "ab" or "ba"
    verdict: str  # "A" or "B"
    probability_a: float  # P(the user's A is better)


@dataclass(frozen=True)
class Decision:
    winner: str  # "A", "B" or "tie"
    probability_a: float  # the mean P(A better) over every reading
    confidence: float
    consistent: bool  # every reading gave the same verdict
    votes: dict[str, int] = field(default_factory=dict)  # readings per verdict: {"A": 2, "B": 1}


def check_rule(rule: str, tie_margin: float) -> None:
    """A usage error for an unknown rule or a margin outside [0, 0.5)."""
    if rule not in RULES:
        raise UsageError(f"--decide {rule!r}: use {' or '.join(RULES)}")
    if not (math.isfinite(tie_margin) and 0 <= tie_margin < 0.5):
        raise UsageError(f"--tie-margin {tie_margin}: give a number from 0 to below 0.5 (0.05: a tie within 45-55%)")


def check_samples(samples: int, temperature: float) -> None:
    """A usage error for a sample count below 1, or above 1 where every sample would be the same trace."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise UsageError(f"--samples {samples}: give a whole number from 1 to {MAX_SAMPLES}")
    if samples > 1 and temperature <= 0:
        raise UsageError(
            f"--samples {samples} needs --temperature above 0 (greedy decoding gives the same trace every "
            "time): add e.g. --temperature 0.7"
        )


def confidence_of(winner: str, probability_a: float) -> float:
    """The winner's probability; for a tie, how close ``probability_a`` is to even (1.0 at 0.5)."""
    if winner == "A":
        return probability_a
    if winner == "B":
        return 1.0 - probability_a
    return 1.0 - abs(2.0 * probability_a - 1.0)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _order_verdict(traces: Sequence[Trace]) -> str | None:
    """One order's verdict from its samples: the majority; an even split goes to the side its mean
    P(A better) favours; None when even that is exactly 0.5."""
    votes = Counter(t.verdict for t in traces)
    if votes["A"] != votes["B"]:
        return "A" if votes["A"] > votes["B"] else "B"
    mean = _mean([t.probability_a for t in traces])
    return None if mean == 0.5 else "A" if mean > 0.5 else "B"


def _agreed(traces: Sequence[Trace]) -> str:
    by_order: dict[str, list[Trace]] = {}
    for trace in traces:
        by_order.setdefault(trace.order, []).append(trace)
    verdicts = {_order_verdict(group) for group in by_order.values()}
    agreed = verdicts.pop() if len(verdicts) == 1 else None
    return agreed or "tie"


def _by_probability(probability_a: float, tie_margin: float) -> str:
    if abs(probability_a - 0.5) <= tie_margin:
        return "tie"
    return "A" if probability_a > 0.5 else "B"


def decide(traces: Sequence[Trace], rule: str = DEFAULT_RULE, tie_margin: float = DEFAULT_TIE_MARGIN) -> Decision:
    """The pair's winner from its readings under ``rule`` (see the module docstring)."""
    check_rule(rule, tie_margin)
    if not traces:
        raise ValueError("no reading to decide from")
    probability_a = _mean([t.probability_a for t in traces])
    votes = Counter(t.verdict for t in traces)
    winner = _agreed(traces) if rule == "agreement" else _by_probability(probability_a, tie_margin)
    return Decision(
        winner=winner,
        probability_a=probability_a,
        confidence=confidence_of(winner, probability_a),
        consistent=len(votes) == 1,
        votes={choice: votes[choice] for choice in ("A", "B")},
    )
