"""What a ranking hands back: the ``Ranking`` (candidates best first, scores, intervals, cost) and each
judged pair as a ``Comparison``; ``PairJudge``, what ranking needs of a judge."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rmjudge.bradley_terry import REFERENCE
from rmjudge.errors import RmjudgeError
from rmjudge.prompts import Pair

if TYPE_CHECKING:
    from rmjudge.judgment import Judgment


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
