"""The eval report's numbers on hand-made per-pair results, against values computed by hand."""

from __future__ import annotations

import pytest

from rmjudge.metrics import (
    Bootstrap,
    OrderResult,
    PairResult,
    Skipped,
    accuracy,
    bootstrap_interval,
    build_report,
    calibration,
    first_position_rate,
    flip_rate,
    forced_rate,
    length_bias,
    rewardbench_sections,
    rm_bench,
    rm_bench_difficulty,
    rm_bench_styles,
    speed,
    subset_accuracy,
    tie_rate,
    tokens,
)
from rmjudge.report_compare import compare_reports, report_rows

SWAP = {"A": "B", "B": "A"}


def order(
    name: str, verdict: str, *, forced: bool = False, tokens_in: int = 100, tokens_out: int = 10,
    seconds: float = 1.0, cached: bool = False,
) -> OrderResult:  # fmt: skip
    """An order-judgment; the position verdict follows from the order as the judge computes it."""
    return OrderResult(
        order=name, verdict=verdict, position_verdict=verdict if name == "ab" else SWAP[verdict],
        probability_a=0.8 if verdict == "A" else 0.2, forced=forced, tokens_in=tokens_in, tokens_out=tokens_out,
        seconds=seconds, cached=cached,
    )  # fmt: skip


def pair(
    winner: str, label: str = "A", *, id: str = "p", subset: str | None = None, verdicts: tuple[str, ...] | None = None,
    confidence: float = 0.8, length_a: int = 10, length_b: int = 10, seconds: float = 2.0,
    orders: tuple[OrderResult, ...] | None = None,
) -> PairResult:  # fmt: skip
    """A pair judged in both orders; ``verdicts`` default to what gives ``winner`` (a tie: A then B)."""
    if orders is None:
        if verdicts is None:
            verdicts = ("A", "B") if winner == "tie" else (winner, winner)
        orders = tuple(order(name, v) for name, v in zip(("ab", "ba"), verdicts, strict=True))
    return PairResult(
        id=id, subset=subset, label=label, winner=winner, confidence=confidence, length_a=length_a,
        length_b=length_b, seconds=seconds, orders=orders,
    )  # fmt: skip


def test_score_and_accuracy_count_ties_half() -> None:
    results = [pair("A", "A"), pair("B", "A"), pair("tie", "A"), pair("B", "B")]
    assert [r.score for r in results] == [1.0, 0.0, 0.5, 1.0]
    estimate = accuracy(results)
    assert estimate["value"] == pytest.approx(2.5 / 4)
    assert estimate["n"] == 4


def test_accuracy_of_nothing_is_none_not_zero() -> None:
    assert accuracy([]) == {"value": None, "low": None, "high": None, "n": 0}


def test_accuracy_per_subset() -> None:
    results = [
        pair("A", "A", subset="x"), pair("tie", "A", subset="x"),
        pair("A", "B", subset="y"), pair("B", "B", subset="y"),
        pair("A", "A", subset=None),
    ]  # fmt: skip
    subsets = subset_accuracy(results)
    assert list(subsets) == ["x", "y"]  # the pair without a subset is in no subset
    assert (subsets["x"]["value"], subsets["x"]["n"]) == (0.75, 2)
    assert (subsets["y"]["value"], subsets["y"]["n"]) == (0.5, 2)


def test_bootstrap_interval_contains_the_estimate_and_has_the_expected_width() -> None:
    scores = [1.0] * 140 + [0.0] * 60  # 70% of 200
    low, high = bootstrap_interval(scores)
    assert low < 0.7 < high
    # The normal approximation: 2 x 1.96 x sqrt(0.7 x 0.3 / 200) = 0.127.
    assert high - low == pytest.approx(0.127, abs=0.02)


def test_bootstrap_interval_narrows_with_more_data() -> None:
    few = bootstrap_interval([1.0] * 14 + [0.0] * 6)
    many = bootstrap_interval([1.0] * 140 + [0.0] * 60)
    assert few is not None and many is not None
    assert many[1] - many[0] < (few[1] - few[0]) / 2  # 10x the data: about 1/sqrt(10) the width


def test_bootstrap_interval_is_deterministic_with_the_seed() -> None:
    scores = [1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0]
    assert bootstrap_interval(scores, Bootstrap(seed=3)) == bootstrap_interval(scores, Bootstrap(seed=3))
    others = {bootstrap_interval(scores, Bootstrap(seed=seed)) for seed in range(5)}
    assert len(others) > 1  # the seed is really used


def test_bootstrap_interval_of_constant_scores_is_a_point() -> None:
    assert bootstrap_interval([1.0] * 30) == (1.0, 1.0)
    assert bootstrap_interval([]) is None


def test_flip_rate_counts_only_pairs_judged_in_both_orders() -> None:
    results = [
        pair("tie", verdicts=("A", "B")),  # flipped with the order
        pair("A"),
        pair("B", "B"),
        pair("A", orders=(order("ab", "A"),)),  # one order: nothing to compare
    ]
    assert flip_rate(results) == {"value": pytest.approx(1 / 3), "n": 3}
    assert flip_rate([pair("A", orders=(order("ba", "A"),))]) == {"value": None, "n": 0}


def test_first_position_rate_is_per_order_judgment() -> None:
    # ab/A: first shown won; ba/B: B was shown first and won; ba/A: second shown won.
    results = [pair("A", verdicts=("A", "A")), pair("tie", verdicts=("A", "B")), pair("A", orders=(order("ba", "B"),))]
    # positions: A, B | A, A | A  -> 4 of 5 first-position wins
    assert first_position_rate(results) == {"value": pytest.approx(4 / 5), "n": 5}


def test_length_bias_compares_the_judge_with_the_labels() -> None:
    results = [
        pair("A", "A", length_a=10, length_b=5),  # longer A wins; label says longer
        pair("B", "A", length_a=5, length_b=10),  # longer B wins; label says shorter
        pair("tie", "B", length_a=5, length_b=10),  # tie: half; label says longer
        pair("A", "A", length_a=7, length_b=7),  # equal lengths: left out
    ]
    bias = length_bias(results)
    assert bias["n"] == 3
    assert bias["judge_picks_longer"] == pytest.approx(2.5 / 3)
    assert bias["label_prefers_longer"] == pytest.approx(2 / 3)
    assert bias["bias"] == pytest.approx(0.5 / 3)


def test_forced_and_tie_rates() -> None:
    results = [
        pair("A", orders=(order("ab", "A", forced=True), order("ba", "A"))),
        pair("tie"),
        pair("B", "B", orders=(order("ab", "B", forced=True),)),
    ]
    assert forced_rate(results) == {"value": pytest.approx(2 / 5), "n": 5}
    assert tie_rate(results) == {"value": pytest.approx(1 / 3), "n": 3}


def test_tokens_per_judgment() -> None:
    orders = (order("ab", "A", tokens_in=100, tokens_out=10), order("ba", "A", tokens_in=120, tokens_out=30))
    results = [pair("A", orders=orders)]
    assert tokens(results) == {"prompt_per_judgment": 110.0, "generated_per_judgment": 20.0, "judgments": 2}


def test_speed_counts_only_pairs_the_model_really_judged() -> None:
    fresh = (order("ab", "A", seconds=10.0), order("ba", "A", seconds=20.0))
    cached = (order("ab", "A", seconds=0.0, cached=True), order("ba", "A", seconds=0.0, cached=True))
    results = [pair("A", seconds=30.0, orders=fresh), pair("A", seconds=30.0, orders=fresh)]
    results.append(pair("A", seconds=0.0, orders=cached))
    result = speed(results)
    assert result["pairs_per_minute"] == pytest.approx(2.0)  # 2 pairs in 60 s
    assert result["judged_pairs"] == 2
    assert result["model_minutes"] == pytest.approx(60.0 / 60)
    assert result["cache_hit_rate"] == pytest.approx(2 / 6)
    assert speed([pair("A", seconds=0.0, orders=cached)])["pairs_per_minute"] is None


def test_calibration_bins_and_expected_calibration_error() -> None:
    results = [
        pair("A", "A", confidence=0.95),
        pair("A", "B", confidence=0.92),
        pair("B", "B", confidence=0.65),
        pair("tie", "A", confidence=0.99),  # no side to be right about: left out
    ]
    result = calibration(results)
    assert result["n"] == 3
    assert [(b["low"], b["high"], b["n"]) for b in result["bins"]] == [(0.6, 0.7, 1), (0.9, 1.0, 2)]
    assert result["bins"][1]["confidence"] == pytest.approx(0.935)
    assert result["bins"][1]["accuracy"] == 0.5
    # (2 x |0.5 - 0.935| + 1 x |1 - 0.65|) / 3
    assert result["ece"] == pytest.approx((2 * 0.435 + 0.35) / 3)
    assert calibration([pair("A", confidence=1.0)])["bins"][0]["low"] == 0.9  # 1.0 falls in the top bin


def test_rewardbench_sections_use_rewardbench_weights() -> None:
    results = [
        pair("A", subset="alpacaeval-easy"), pair("A", subset="alpacaeval-easy"),  # 100%
        pair("A", subset="mt-bench-easy"), pair("B", subset="mt-bench-easy"),  # 50%
        pair("A", subset="math-prm"),  # 100%
        pair("B", subset="hep-python"),  # 0%
    ]  # fmt: skip
    sections = rewardbench_sections(results)
    assert sections is not None
    assert sections["sections"]["Chat"]["value"] == pytest.approx((100 * 1.0 + 28 * 0.5) / 128)
    assert sections["sections"]["Chat"]["subsets"] == ["alpacaeval-easy", "mt-bench-easy"]
    assert sections["sections"]["Reasoning"]["value"] == pytest.approx(984 / (984 + 164))
    assert set(sections["sections"]) == {"Chat", "Reasoning"}
    assert sections["score"] is None  # two of four sections: no overall score


def test_rewardbench_score_is_the_mean_of_the_four_sections() -> None:
    results = [
        pair("A", subset="alpacaeval-hard"),  # Chat 1.0
        pair("tie", subset="llmbar-adver-GPTInst"),  # Chat Hard 0.5
        pair("B", subset="xstest-should-respond"),  # Safety 0.0
        pair("A", subset="hep-go"),  # Reasoning 1.0
    ]
    sections = rewardbench_sections(results)
    assert sections is not None
    assert sections["score"] == pytest.approx((1.0 + 0.5 + 0.0 + 1.0) / 4)


def test_rewardbench_sections_absent_for_other_subsets() -> None:
    assert rewardbench_sections([pair("A", subset="LLMBar/Natural"), pair("A")]) is None


@pytest.mark.parametrize(
    ("pair_id", "difficulty"),
    [
        ("rmbench/chat/8/c0r2", "hard"), ("rmbench/chat/8/c1r2", "hard"), ("rmbench/chat/8/c0r1", "hard"),
        ("rmbench/chat/8/c1r1", "normal"), ("c0r0", "normal"),
        ("rmbench/code/3/c2r0", "easy"), ("x-c2r1", "easy"),
        ("rmbench/chat/8/c3r0", None), ("abc1r2", None), ("llmbar/Natural/4", None),
    ],
)  # fmt: skip
def test_rm_bench_difficulty_from_the_id(pair_id: str, difficulty: str | None) -> None:
    assert rm_bench_difficulty(pair_id) == difficulty


def test_rm_bench_styles_split_the_id() -> None:
    assert rm_bench_styles("rmbench/chat/8/c0r2") == ("rmbench/chat/8/", 0, 2)
    assert rm_bench_styles("c1r1") == ("", 1, 1)
    assert rm_bench_styles("rmbench/chat/8") is None


def test_rm_bench_easy_normal_hard() -> None:
    results = [
        pair("A", id="rmbench/chat/1/c0r1", subset="chat"),  # hard, right
        pair("B", id="rmbench/chat/1/c0r2", subset="chat"),  # hard, wrong
        pair("tie", id="rmbench/code/1/c1r2", subset="code"),  # hard, half
        pair("A", id="rmbench/chat/1/c1r1", subset="chat"),  # normal, right
        pair("A", id="rmbench/chat/1/c2r0", subset="chat"),  # easy, right
        pair("B", id="rmbench/code/1/c2r1", subset="code"),  # easy, wrong
        pair("B", id="llmbar/1", subset="chat"),  # not an RM-Bench pair
    ]
    result = rm_bench(results)
    assert result is not None
    assert result["hard"] == {"value": pytest.approx(1.5 / 3), "n": 3}
    assert result["normal"] == {"value": 1.0, "n": 1}
    assert result["easy"] == {"value": 0.5, "n": 2}
    assert result["subsets"]["chat"]["hard"] == {"value": 0.5, "n": 2}
    assert result["subsets"]["code"]["easy"] == {"value": 0.0, "n": 1}
    assert result["subsets"]["code"]["normal"] == {"value": None, "n": 0}
    assert rm_bench([pair("A", id="llmbar/1")]) is None


def test_build_report_counts_skipped_inputs_and_is_reproducible() -> None:
    results = [pair("A", subset="x"), pair("B", subset="x"), pair("tie", subset="y")]
    skipped = [Skipped("line 3", "broken"), Skipped("line 9", "broken"), Skipped("p7", "too_long")]
    report = build_report(results, skipped, {"protocol": "both"})
    assert report["pairs"] == 3
    assert report["skipped"] == {"broken": 2, "too_long": 1}
    assert report["run"] == {"protocol": "both"}
    assert report["accuracy"]["value"] == pytest.approx(1.5 / 3)
    assert report["rewardbench"] is None and report["rm_bench"] is None
    assert build_report(results, skipped, {"protocol": "both"}) == report


def test_pair_results_survive_a_round_trip_through_dicts() -> None:
    result = pair("tie", "B", id="q", subset="s", confidence=0.4, length_a=3, length_b=9)
    assert PairResult.from_dict(result.to_dict()) == result


def test_report_rows_and_comparison() -> None:
    a = build_report([pair("A", subset="x"), pair("B", subset="x"), pair("A", subset="y")])
    b = build_report([pair("A", subset="x"), pair("A", subset="x"), pair("tie", subset="z")])
    names = [row.metric for row in report_rows(a)]
    assert names[:5] == ["pairs", "accuracy", "subset:x", "subset:y", "flip_rate"]
    compared = {row["metric"]: row for row in compare_reports(a, b)}
    assert compared["accuracy"]["a"] == pytest.approx(2 / 3)
    assert compared["accuracy"]["b"] == pytest.approx(2.5 / 3)
    assert compared["accuracy"]["delta"] == pytest.approx(0.5 / 3)
    assert compared["subset:x"]["delta"] == pytest.approx(0.5)
    assert compared["subset:y"]["b"] is None and compared["subset:y"]["delta"] is None
    assert compared["subset:z"]["a"] is None and compared["subset:z"]["b"] == 0.5
    assert compared["tie_rate"]["delta"] == pytest.approx(1 / 3)
    assert compared["accuracy"]["b_outside_a_interval"] is False  # 83% is inside the wide interval of 3 pairs
    assert compared["tie_rate"]["b_outside_a_interval"] is None  # rates have no interval
    assert compare_reports(a, a)[1]["delta"] == 0.0


def test_comparison_flags_a_value_outside_the_first_interval() -> None:
    half = build_report([pair("A")] * 20 + [pair("B")] * 20)  # 50%, interval about +-15 points
    better = build_report([pair("A")] * 40)
    compared = {row["metric"]: row for row in compare_reports(half, better)}
    assert compared["accuracy"]["delta"] == pytest.approx(0.5)
    assert compared["accuracy"]["b_outside_a_interval"] is True
