"""The numbers of an eval report, computed from per-pair results alone (pure functions, no model).

Conventions, the same in every number below:
- a pair's score is 1 when the judge picked the labelled (chosen) response, 0 when it picked the
  other, and 0.5 for a tie (the two orders disagreed);
- intervals are 95% percentile bootstrap intervals over pairs, seeded, so a report recomputed from
  the same results is identical;
- a rate with nothing to measure (no pair judged in both orders, say) is ``None``, never 0.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

REPORT_FORMAT = 1  # bumped when the report's shape changes
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE_LEVEL = 0.95
CALIBRATION_BINS = 10

# RewardBench (allenai/reward-bench, rewardbench/constants.py): subsets per section, and the example
# count each subset is weighted by. A section's score is the count-weighted mean of its subsets'
# accuracies, as RewardBench's calculate_scores_per_section computes it; math-prm's weight is
# RewardBench's own upweighting (447 real pairs counted as 984, the hep-* total), so that math and
# code weigh the same in Reasoning. The overall score is the mean of the four sections.
REWARDBENCH_SECTIONS: dict[str, dict[str, int]] = {
    "Chat": {
        "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    },
    "Chat Hard": {
        "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
        "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    },
    "Safety": {
        "refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154, "xstest-should-respond": 250,
        "donotanswer": 136,
    },
    "Reasoning": {
        "math-prm": 984,
        "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
    },
}  # fmt: skip
_REWARDBENCH_SUBSETS = {name.lower() for subsets in REWARDBENCH_SECTIONS.values() for name in subsets}

# RM-Bench (THU-KEG/RM-Bench): each prompt has a chosen and a rejected response in 3 styles
# (0 concise, 1 detailed plain text, 2 detailed markdown); pair c<i>r<j> sets chosen style i against
# rejected style j. Its README's compute_accuracy: hard = the upper-right triangle (i < j: the chosen
# response is less styled than the rejected one), normal = the diagonal, easy = lower-left (i > j).
_RM_BENCH_ID = re.compile(r"^(|.*[^0-9A-Za-z])c([0-2])r([0-2])$")


@dataclass(frozen=True)
class OrderResult:
    """One order's judgment of a pair, as an eval keeps it."""

    order: str  # "ab": A shown first; "ba": B shown first
    verdict: str  # "A" or "B", in the pair's labels
    position_verdict: str  # "A": the first-shown response won
    probability_a: float
    forced: bool
    tokens_in: int
    tokens_out: int
    seconds: float
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": self.order, "verdict": self.verdict, "position_verdict": self.position_verdict,
            "probability_a": self.probability_a, "forced": self.forced, "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out, "seconds": self.seconds, "cached": self.cached,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrderResult:
        return cls(
            order=str(data["order"]), verdict=str(data["verdict"]), position_verdict=str(data["position_verdict"]),
            probability_a=float(data["probability_a"]), forced=bool(data["forced"]), tokens_in=int(data["tokens_in"]),
            tokens_out=int(data["tokens_out"]), seconds=float(data["seconds"]), cached=bool(data["cached"]),
        )  # fmt: skip


@dataclass(frozen=True)
class PairResult:
    """A labelled pair's judgment: what every number of the report is computed from."""

    id: str
    subset: str | None
    label: str  # "A" or "B": the response the data says is better
    winner: str  # "A", "B" or "tie"
    confidence: float
    length_a: int  # characters
    length_b: int
    seconds: float  # wall time of the judgment (0 when every order came from the cache)
    orders: tuple[OrderResult, ...]
    reason: str = ""  # the model's one-line reason, for reading and diffing results

    @property
    def score(self) -> float:
        return 0.5 if self.winner == "tie" else float(self.winner == self.label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "subset": self.subset, "label": self.label, "winner": self.winner, "score": self.score,
            "confidence": self.confidence, "length_a": self.length_a, "length_b": self.length_b,
            "seconds": self.seconds, "orders": [o.to_dict() for o in self.orders], "reason": self.reason,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairResult:
        return cls(
            id=str(data["id"]), subset=None if data.get("subset") is None else str(data["subset"]),
            label=str(data["label"]), winner=str(data["winner"]), confidence=float(data["confidence"]),
            length_a=int(data["length_a"]), length_b=int(data["length_b"]), seconds=float(data["seconds"]),
            orders=tuple(OrderResult.from_dict(o) for o in data["orders"]), reason=str(data.get("reason", "")),
        )  # fmt: skip


@dataclass(frozen=True)
class Skipped:
    """An input that was not judged: a broken line, a pair too long for the context."""

    id: str  # the record's id, or "line N"
    reason: str  # "broken" or "too_long"
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skipped:
        return cls(id=str(data["id"]), reason=str(data["reason"]), message=str(data.get("message", "")))


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED
    level: float = CONFIDENCE_LEVEL


# -- the numbers --------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def rate(values: Sequence[float]) -> dict[str, Any]:
    """A share (or mean) with how many things it was measured on."""
    return {"value": _mean(values), "n": len(values)}


def bootstrap_interval(scores: Sequence[float], bootstrap: Bootstrap = Bootstrap()) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of ``scores`` (None when there are none)."""
    if not scores:
        return None
    data = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(bootstrap.seed)
    means = data[rng.integers(0, len(data), size=(bootstrap.resamples, len(data)))].mean(axis=1)
    tail = (1.0 - bootstrap.level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def accuracy(results: Sequence[PairResult], bootstrap: Bootstrap = Bootstrap()) -> dict[str, Any]:
    """Mean score (ties count half) with its bootstrap interval."""
    scores = [r.score for r in results]
    interval = bootstrap_interval(scores, bootstrap)
    return {
        "value": _mean(scores),
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
        "n": len(scores),
    }


def _by(results: Iterable[PairResult], key: Callable[[PairResult], str | None]) -> dict[str, list[PairResult]]:
    groups: dict[str, list[PairResult]] = defaultdict(list)
    for result in results:
        name = key(result)
        if name is not None:
            groups[name].append(result)
    return dict(sorted(groups.items()))


def subset_accuracy(results: Sequence[PairResult], bootstrap: Bootstrap = Bootstrap()) -> dict[str, dict[str, Any]]:
    """Accuracy per subset (pairs without a subset are left out; empty when no pair has one)."""
    return {name: accuracy(group, bootstrap) for name, group in _by(results, lambda r: r.subset).items()}


def flip_rate(results: Sequence[PairResult]) -> dict[str, Any]:
    """Share of pairs judged in both orders whose verdict changed when the order was swapped."""
    both = [r for r in results if {o.order for o in r.orders} == {"ab", "ba"}]
    return rate([float(len({o.verdict for o in r.orders}) > 1) for r in both])


def first_position_rate(results: Sequence[PairResult]) -> dict[str, Any]:
    """Share of order-judgments where the model picked the response it was shown first (0.5: no bias)."""
    return rate([float(o.position_verdict == "A") for r in results for o in r.orders])


def length_bias(results: Sequence[PairResult]) -> dict[str, Any]:
    """How often the longer response wins (ties half) against how often the label says it should,
    over pairs whose responses differ in length (characters). ``bias`` > 0: the judge favours length."""
    differing = [r for r in results if r.length_a != r.length_b]
    longer = {id(r): "A" if r.length_a > r.length_b else "B" for r in differing}
    judge = [0.5 if r.winner == "tie" else float(r.winner == longer[id(r)]) for r in differing]
    label = [float(r.label == longer[id(r)]) for r in differing]
    judge_rate, label_rate = _mean(judge), _mean(label)
    return {
        "judge_picks_longer": judge_rate,
        "label_prefers_longer": label_rate,
        "bias": None if judge_rate is None or label_rate is None else judge_rate - label_rate,
        "n": len(differing),
    }


def forced_rate(results: Sequence[PairResult]) -> dict[str, Any]:
    """Share of order-judgments whose verdict was forced (no answer within the budget)."""
    return rate([float(o.forced) for r in results for o in r.orders])


def tie_rate(results: Sequence[PairResult]) -> dict[str, Any]:
    return rate([float(r.winner == "tie") for r in results])


def tokens(results: Sequence[PairResult]) -> dict[str, Any]:
    """Mean prompt and generated tokens per order-judgment."""
    orders = [o for r in results for o in r.orders]
    return {
        "prompt_per_judgment": _mean([float(o.tokens_in) for o in orders]),
        "generated_per_judgment": _mean([float(o.tokens_out) for o in orders]),
        "judgments": len(orders),
    }


def speed(results: Sequence[PairResult]) -> dict[str, Any]:
    """Throughput of the model on the pairs it really judged (cached orders cost nothing and are left out)."""
    orders = [o for r in results for o in r.orders]
    fresh = [r for r in results if r.orders and not any(o.cached for o in r.orders)]
    seconds = sum(r.seconds for r in fresh)
    return {
        "pairs_per_minute": 60.0 * len(fresh) / seconds if seconds > 0 else None,
        "judged_pairs": len(fresh),
        "model_minutes": sum(o.seconds for o in orders if not o.cached) / 60.0,
        "cache_hit_rate": _mean([float(o.cached) for o in orders]),
    }


def calibration(results: Sequence[PairResult], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Confidence against observed accuracy over pairs with a winner (ties have no side to be right
    about), in equal-width confidence bins; ``ece``: the pair-weighted mean gap between the two."""
    decided = [r for r in results if r.winner != "tie"]
    grouped: dict[int, list[PairResult]] = defaultdict(list)
    for result in decided:
        grouped[min(int(result.confidence * bins), bins - 1)].append(result)
    rows = []
    gap = 0.0
    for index in sorted(grouped):
        group = grouped[index]
        mean_confidence = sum(r.confidence for r in group) / len(group)
        observed = sum(r.score for r in group) / len(group)
        gap += len(group) * abs(observed - mean_confidence)
        rows.append({
            "low": index / bins, "high": (index + 1) / bins, "n": len(group),
            "confidence": mean_confidence, "accuracy": observed,
        })  # fmt: skip
    return {"bins": rows, "ece": gap / len(decided) if decided else None, "n": len(decided)}


def rewardbench_sections(results: Sequence[PairResult]) -> dict[str, Any] | None:
    """RewardBench's section scores when subsets carry RewardBench's names (None otherwise)."""

    def rewardbench_name(result: PairResult) -> str | None:
        name = (result.subset or "").lower()
        return name if name in _REWARDBENCH_SUBSETS else None

    by_subset = _by(results, rewardbench_name)
    if not by_subset:
        return None
    sections: dict[str, Any] = {}
    for section, weights in REWARDBENCH_SECTIONS.items():
        present = {name: by_subset[name.lower()] for name in weights if name.lower() in by_subset}
        if not present:
            continue
        total = sum(weights[name] for name in present)
        weighted = sum(weights[name] * sum(r.score for r in group) / len(group) for name, group in present.items())
        score = weighted / total
        sections[section] = {"value": score, "subsets": sorted(present), "n": sum(len(g) for g in present.values())}
    complete = len(sections) == len(REWARDBENCH_SECTIONS)
    return {
        "sections": sections,
        "score": sum(s["value"] for s in sections.values()) / len(sections) if complete else None,
        "weighting": "RewardBench example counts (math-prm upweighted to 984)",
    }


def rm_bench_styles(pair_id: str) -> tuple[str, int, int] | None:
    """``"rmbench/chat/8/c0r2"`` -> ``("rmbench/chat/8/", 0, 2)``: the prompt's part of the id, the
    chosen response's style and the rejected one's; None for an id without RM-Bench's suffix."""
    match = _RM_BENCH_ID.match(pair_id)
    return None if match is None else (match.group(1), int(match.group(2)), int(match.group(3)))


def rm_bench_difficulty(pair_id: str) -> str | None:
    """'easy', 'normal' or 'hard' for an RM-Bench style pair id (…c<i>r<j>), None for other ids."""
    styles = rm_bench_styles(pair_id)
    if styles is None:
        return None
    _, chosen_style, rejected_style = styles
    if chosen_style < rejected_style:
        return "hard"
    return "normal" if chosen_style == rejected_style else "easy"


def _difficulties(results: Sequence[PairResult]) -> dict[str, Any]:
    groups = _by(results, lambda r: rm_bench_difficulty(r.id))
    return {level: rate([r.score for r in groups.get(level, [])]) for level in ("easy", "normal", "hard")}


def rm_bench(results: Sequence[PairResult]) -> dict[str, Any] | None:
    """RM-Bench's easy/normal/hard accuracies (ties half), overall and per subset (its domains),
    when pair ids carry its style pairing (None otherwise). Pooled over pairs: the same as RM-Bench's
    mean of cell accuracies when every prompt has all nine pairs."""
    styled = [r for r in results if rm_bench_difficulty(r.id) is not None]
    if not styled:
        return None
    return {
        **_difficulties(styled),
        "subsets": {name: _difficulties(group) for name, group in _by(styled, lambda r: r.subset).items()},
    }


def build_report(
    results: Sequence[PairResult],
    skipped: Sequence[Skipped] = (),
    run: dict[str, Any] | None = None,
    bootstrap: Bootstrap = Bootstrap(),
) -> dict[str, Any]:
    """The whole report: ``run`` (model, protocol, data...) is copied in as given."""
    reasons: dict[str, int] = defaultdict(int)
    for item in skipped:
        reasons[item.reason] += 1
    return {
        "report_format": REPORT_FORMAT,
        "run": run or {},
        "pairs": len(results),
        "skipped": dict(sorted(reasons.items())),
        "accuracy": accuracy(results, bootstrap),
        "subsets": subset_accuracy(results, bootstrap),
        "flip_rate": flip_rate(results),
        "first_position_rate": first_position_rate(results),
        "length_bias": length_bias(results),
        "forced_rate": forced_rate(results),
        "tie_rate": tie_rate(results),
        "tokens": tokens(results),
        "speed": speed(results),
        "calibration": calibration(results),
        "rewardbench": rewardbench_sections(results),
        "rm_bench": rm_bench(results),
        "bootstrap": {"resamples": bootstrap.resamples, "seed": bootstrap.seed, "level": bootstrap.level},
    }
