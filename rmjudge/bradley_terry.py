"""Bradley-Terry scores from pairwise outcomes: the maximum-likelihood fit, bootstrap intervals, the
share of resamples each candidate comes first in, and the win matrix. Pure numpy/scipy: what was
compared reaches it as ``Compared`` (``rmjudge.ranking.Comparison`` is one).

Strengths are natural log-odds, mean 0, fitted with a light Gaussian prior so that a candidate that
wins everything stays finite; with a reference (the last player) they are relative to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

REFERENCE = -1  # Comparison.b when the second text is the reference
PRIOR = 0.01  # precision of the Gaussian prior on strengths: light, it only keeps all-wins finite
BOOTSTRAP = 200  # resamples for the intervals


class Compared(Protocol):
    """One compared pair, as the fit needs it: who was A, who was B, and how much of a win A had."""

    @property
    def a(self) -> int: ...

    @property
    def b(self) -> int: ...  # REFERENCE for the reference text

    def outcome(self, outcome: str = "verdict") -> float:
        """1, 0.5 (tie) or 0 for ``a``; with ``"probability"``, P(a better)."""
        ...


def win_counts(comparisons: Sequence[Compared], players: int, outcome: str = "verdict") -> np.ndarray:
    """``W[i, j]``: how many wins ``i`` has over ``j`` (ties and probabilities fractional).
    The reference, when there is one, is the last player."""
    wins = np.zeros((players, players))
    for comparison in comparisons:
        a, b = (players - 1 if i == REFERENCE else i for i in (comparison.a, comparison.b))
        value = comparison.outcome(outcome)
        wins[a, b] += value
        wins[b, a] += 1.0 - value
    return wins


def _negative_log_posterior(theta: np.ndarray, wins: np.ndarray, prior: float) -> tuple[float, np.ndarray]:
    diff = theta[:, None] - theta[None, :]
    value = float((wins * np.logaddexp(0.0, -diff)).sum() + prior / 2 * theta @ theta)
    lost_share = wins * expit(-diff)  # W_ij (1 - σ(θ_i - θ_j))
    return value, -lost_share.sum(axis=1) + lost_share.sum(axis=0) + prior * theta


def hessian(theta: np.ndarray, wins: np.ndarray, prior: float) -> np.ndarray:
    p = expit(theta[:, None] - theta[None, :])
    weight = (wins + wins.T) * p * (1.0 - p)
    matrix = -weight
    np.fill_diagonal(matrix, weight.sum(axis=1) - np.diag(weight))
    return matrix + prior * np.eye(len(theta))


def fit_bradley_terry(wins: np.ndarray, *, prior: float = PRIOR) -> np.ndarray:
    """Strengths θ maximising Σ W_ij log σ(θ_i − θ_j) − prior/2 |θ|², centred on mean 0.

    P(i beats j) = σ(θ_i − θ_j). The objective is strictly convex, so a trust-region Newton method
    with the exact Hessian converges in a few iterations.
    """
    result = minimize(
        _negative_log_posterior,
        np.zeros(wins.shape[0]),
        args=(wins, prior),
        jac=True,
        hess=hessian,
        method="trust-exact",
    )
    theta: np.ndarray = result.x
    return theta - theta.mean()


@dataclass(frozen=True)
class Fit:
    """Scores and their uncertainty from one set of comparisons."""

    scores: np.ndarray  # by candidate
    samples: np.ndarray  # bootstrap strengths, resample x candidate
    intervals: np.ndarray  # candidate x (low, high)
    top_probability: np.ndarray


def fit(
    comparisons: Sequence[Compared],
    candidates: int,
    *,
    outcome: str = "verdict",
    resamples: int = BOOTSTRAP,
    seed: int = 0,
) -> Fit:
    """Bradley-Terry scores, bootstrap intervals and P(first) from ``comparisons``.

    Comparisons are put in a fixed order first, so the same judgments give the same report whatever
    order they were made in. With a reference, scores are relative to it (the reference scores 0).
    """
    with_reference = any(c.b == REFERENCE or c.a == REFERENCE for c in comparisons)
    players = candidates + with_reference
    ordered = sorted(comparisons, key=lambda c: (c.a, c.b, c.outcome(outcome)))

    def strengths(chosen: Sequence[Compared]) -> np.ndarray:
        theta = fit_bradley_terry(win_counts(chosen, players, outcome))
        return theta[:candidates] - theta[-1] if with_reference else theta

    scores = strengths(ordered)
    rng = np.random.default_rng(seed)
    samples = np.array(
        [strengths([ordered[i] for i in rng.integers(0, len(ordered), len(ordered))]) for _ in range(resamples)]
    ).reshape(resamples, candidates)
    if resamples:
        intervals, top = np.percentile(samples, [2.5, 97.5], axis=0).T, first_share(samples)
    else:
        intervals, top = np.column_stack([scores, scores]), np.zeros(candidates)
    return Fit(scores, samples, intervals, top)


def first_share(samples: np.ndarray) -> np.ndarray:
    """Per candidate, the share of samples (rows of strengths) in which it comes first; a shared
    first place is split."""
    firsts = samples >= samples.max(axis=1, keepdims=True) - 1e-9
    shares: np.ndarray = (firsts / firsts.sum(axis=1, keepdims=True)).mean(axis=0)
    return shares


def win_matrix(comparisons: Sequence[Compared], candidates: int) -> list[list[float | None]]:
    """Mean P(row beats column) over the comparisons of each pair of candidates; None where none."""
    total = np.zeros((candidates, candidates))
    count = np.zeros((candidates, candidates))
    for comparison in comparisons:
        a, b = comparison.a, comparison.b
        if REFERENCE in (a, b):
            continue
        p = comparison.outcome("probability")
        total[a, b] += p
        total[b, a] += 1.0 - p
        count[a, b] += 1
        count[b, a] += 1
    return [
        [float(total[i, j] / count[i, j]) if count[i, j] else None for j in range(candidates)]
        for i in range(candidates)
    ]
