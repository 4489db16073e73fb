"""What the judge hands back: a pair's ``Judgment`` and each order's ``OrderJudgment`` (plain dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rmjudge.verdict import Rationale


@dataclass(frozen=True)
class OrderJudgment:
    """One order's judgment (one sample of it, with ``samples``). ``verdict`` is in the user's labels;
    ``position_verdict`` is what the model answered about the positions it saw (they differ in the ``ba`` order)."""

    order: str  # "ab": the user's A shown as Chatbot A; "ba": swapped
    sample: int  # 0 to samples - 1: this order's trace with seed + sample
    verdict: str
    position_verdict: str
    probability: float  # P(verdict) at the verdict token, normalised over A and B
    probability_a: float  # the same reading, as P(the user's A is better)
    forced: bool  # no answer within the budget: the verdict was read off after "<answer>[["
    rationale: Rationale
    tokens_in: int
    tokens_out: int
    seconds: float
    stopped_by: str  # "stop", "eos", "length", or "none" (budget 0)
    cached: bool
    completion: str = field(repr=False)

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not raw:
            del data["completion"]
        return data


@dataclass(frozen=True)
class Judgment:
    winner: str  # "A", "B" or "tie", by the rule in meta["decision"]
    confidence: float  # calibrated where a calibration is stored (then ``confidence_raw`` is the raw one)
    consistent: bool  # every order (and sample) gave the same verdict
    probability_a: float  # the mean raw P(A better) over every order and sample
    orders: list[OrderJudgment]  # every order's reading; with samples, each order's samples in turn
    meta: dict[str, Any]  # model, template, sampling, decision, versions: what reproduces this judgment
    votes: dict[str, int] = field(default_factory=dict)  # readings per verdict: {"A": 2, "B": 0}
    confidence_raw: float | None = None  # the uncalibrated confidence; None: no calibration applied

    @property
    def forced(self) -> bool:
        return any(o.forced for o in self.orders)

    @property
    def calibrated(self) -> bool:
        return self.confidence_raw is not None

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        calibrated = {"confidence_raw": self.confidence_raw, "calibrated": True} if self.calibrated else {}
        return {
            "winner": self.winner,
            "confidence": self.confidence,
            **calibrated,
            "consistent": self.consistent,
            "probability_a": self.probability_a,
            "votes": self.votes,
            "orders": [o.to_dict(raw) for o in self.orders],
            **self.meta,
        }
