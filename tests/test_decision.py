"""The decision rules (rmjudge.decision): pure, on hand-made readings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmjudge.decision import Trace, check_rule, check_samples, confidence_of, decide
from rmjudge.errors import UsageError
from rmjudge.verdict import combine


def orders(*readings: tuple[str, float]) -> list[Trace]:
    """One reading per order: ab first, then ba."""
    return [Trace(order, verdict, p) for order, (verdict, p) in zip(("ab", "ba"), readings, strict=False)]


def test_agreement_gives_a_tie_however_lopsided_the_probabilities() -> None:
    # A position-biased judge: each order picks what it was shown first, A far more surely than B.
    decision = decide(orders(("A", 0.95), ("B", 0.40)), "agreement")
    assert (decision.winner, decision.consistent) == ("tie", False)
    assert decision.probability_a == pytest.approx(0.675)
    assert decision.confidence == pytest.approx(1 - abs(2 * 0.675 - 1))


def test_probability_takes_the_winner_from_the_mean() -> None:
    decision = decide(orders(("A", 0.95), ("B", 0.40)), "probability")
    assert (decision.winner, decision.consistent) == ("A", False)  # consistent keeps its meaning
    assert decision.confidence == pytest.approx(0.675)
    assert decide(orders(("A", 0.6), ("B", 0.1)), "probability").winner == "B"


def test_probability_ties_only_within_the_margin() -> None:
    readings = orders(("A", 0.75), ("B", 0.375))  # mean 0.5625 (exact in binary, as is the margin below)
    assert decide(readings, "probability", tie_margin=0.0).winner == "A"
    assert decide(readings, "probability", tie_margin=0.0625).winner == "tie"  # inclusive: within 0.0625 of 0.5
    assert decide(readings, "probability", tie_margin=0.06).winner == "A"
    exactly_even = decide(orders(("A", 0.7), ("B", 0.3)), "probability")
    assert exactly_even.winner == "tie" and exactly_even.confidence == pytest.approx(1.0)


def test_both_rules_agree_when_the_orders_do() -> None:
    readings = orders(("B", 0.2), ("B", 0.3))
    for rule in ("agreement", "probability"):
        decision = decide(readings, rule)
        assert (decision.winner, decision.consistent) == ("B", True)
        assert decision.confidence == pytest.approx(0.75)
        assert decision.votes == {"A": 0, "B": 2}


@given(
    st.lists(st.tuples(st.sampled_from("AB"), st.floats(0, 1)), min_size=1, max_size=2),
)
def test_agreement_with_one_reading_per_order_is_rmjudge_0_1s_rule(readings: list[tuple[str, float]]) -> None:
    decision = decide(orders(*readings), "agreement")
    combined = combine([v for v, _ in readings], [p for _, p in readings])
    assert (decision.winner, decision.consistent) == (combined.winner, combined.consistent)
    assert decision.probability_a == pytest.approx(combined.probability_a)
    assert decision.confidence == pytest.approx(combined.confidence)


def test_agreement_with_samples_takes_each_orders_majority() -> None:
    traces = [
        Trace("ab", "A", 0.8), Trace("ab", "A", 0.7), Trace("ab", "B", 0.4),
        Trace("ba", "A", 0.6), Trace("ba", "B", 0.3), Trace("ba", "A", 0.55),
    ]  # fmt: skip
    decision = decide(traces, "agreement")
    assert (decision.winner, decision.consistent) == ("A", False)
    assert decision.votes == {"A": 4, "B": 2}
    assert decision.probability_a == pytest.approx(sum(t.probability_a for t in traces) / 6)
    # One order's majority turns: the orders disagree.
    turned = [*traces[:3], Trace("ba", "B", 0.3), Trace("ba", "B", 0.2), Trace("ba", "A", 0.6)]
    assert decide(turned, "agreement").winner == "tie"


def test_an_even_split_within_an_order_goes_by_its_mean_probability() -> None:
    split = [Trace("ab", "A", 0.9), Trace("ab", "B", 0.3)]  # mean 0.6: the order says A
    assert decide([*split, Trace("ba", "A", 0.6), Trace("ba", "A", 0.7)], "agreement").winner == "A"
    undecided = [Trace("ab", "A", 0.6), Trace("ab", "B", 0.4)]  # mean exactly 0.5: no verdict for that order
    assert decide([*undecided, Trace("ba", "A", 0.9), Trace("ba", "A", 0.9)], "agreement").winner == "tie"


def test_probability_with_samples_is_the_mean_over_every_trace() -> None:
    traces = [Trace("ab", "A", 0.9), Trace("ab", "A", 0.8), Trace("ba", "B", 0.45), Trace("ba", "B", 0.35)]
    decision = decide(traces, "probability")
    assert decision.winner == "A" and decision.probability_a == pytest.approx(0.625)
    assert decision.votes == {"A": 2, "B": 2}


def test_confidence_of() -> None:
    assert confidence_of("A", 0.8) == pytest.approx(0.8)
    assert confidence_of("B", 0.8) == pytest.approx(0.2)
    assert confidence_of("tie", 0.6) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("rule", "margin", "message"),
    [("majority", 0.0, "--decide 'majority': use agreement or probability"), ("probability", 0.5, "--tie-margin 0.5"),
     ("probability", -0.1, "--tie-margin -0.1"), ("probability", float("nan"), "--tie-margin nan")],
)  # fmt: skip
def test_bad_rules_and_margins_are_usage_errors(rule: str, margin: float, message: str) -> None:
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        check_rule(rule, margin)
    with pytest.raises(UsageError):
        decide(orders(("A", 0.9)), rule, margin)


def test_samples_above_one_need_a_temperature() -> None:
    check_samples(1, 0.0)
    check_samples(3, 0.7)
    with pytest.raises(UsageError, match=r"^--samples 3 needs --temperature above 0 .*--temperature 0\.7$"):
        check_samples(3, 0.0)
    with pytest.raises(UsageError, match=r"^--samples 0: give a whole number from 1"):
        check_samples(0, 0.7)


def test_no_reading_is_an_error() -> None:
    with pytest.raises(ValueError, match="no reading"):
        decide([], "probability")
