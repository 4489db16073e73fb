"""The decision rules (rmjudge.decision): pure, on hand-made readings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmjudge import session
from rmjudge.cache import VerdictCache
from rmjudge.decision import Trace, check_rule, check_samples, confidence_of, decide
from rmjudge.errors import UsageError
from rmjudge.judge import Judge, Judgment
from rmjudge.prompts import Pair
from rmjudge.session import JudgeOptions
from rmjudge.verdict import combine

from .conftest import FakeEngine, invoke_cli

EngineFactory = Callable[..., FakeEngine]
PAIR = Pair(a="Paris.", b="Lyon.", question="Capital of France?")


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


# -- through the judge (a scripted, position-biased engine) ---------------------------------------


def first_shown(prompt: str) -> str:
    return prompt.split("[The Start of Chatbot A's Response]")[1].split("[The End of Chatbot A's Response]")[0]


def position_biased(engine_factory: EngineFactory) -> FakeEngine:
    """Always answers "the first shown", surely (0.95) when Paris is first, barely (0.6) when Lyon is."""
    return engine_factory(
        script=lambda _: "<eval>The first is better.</eval>\n<answer>[[A]]</answer>",
        probability_a=lambda prompt: 0.95 if "Paris" in first_shown(prompt) else 0.6,
    )


def test_the_judge_decides_by_its_rule_from_cached_readings(fake_engine_factory: EngineFactory, tmp_path: Path) -> None:
    engine = position_biased(fake_engine_factory)
    cache = VerdictCache(tmp_path / "v.sqlite3")
    agreement = Judge(engine, template="instruct", cache=cache, decide="agreement").judge(PAIR)
    assert (agreement.winner, agreement.consistent) == ("tie", False)
    assert [o.verdict for o in agreement.orders] == ["A", "B"]
    # The same readings, from the cache (the rule is not part of its key), decided by the mean:
    # (0.95 + (1 - 0.6)) / 2 = 0.675 for Paris.
    probability = Judge(engine, template="instruct", cache=cache, decide="probability").judge(PAIR)
    assert len(engine.generate_calls) == 2 and all(o.cached for o in probability.orders)
    assert (probability.winner, probability.consistent) == ("A", False)
    assert probability.probability_a == pytest.approx(0.675) and probability.confidence == pytest.approx(0.675)
    assert probability.votes == {"A": 1, "B": 1}
    data = probability.to_dict()
    assert data["decision"] == {"rule": "probability", "tie_margin": 0.0, "samples": 1}
    assert data["votes"] == {"A": 1, "B": 1} and "calibrated" not in data and "confidence_raw" not in data
    # A margin wide enough makes it a tie again.
    wide = Judge(engine, template="instruct", cache=cache, tie_margin=0.2).judge(PAIR)
    assert wide.winner == "tie" and wide.confidence == pytest.approx(1 - abs(2 * 0.675 - 1))


def test_the_default_rule_is_probability(fake_engine_factory: EngineFactory) -> None:
    judgment = Judge(position_biased(fake_engine_factory), template="instruct").judge(PAIR)
    assert judgment.winner == "A" and judgment.meta["decision"]["rule"] == "probability"


def test_decide_and_tie_margin_on_the_command_line(
    fake_engine_factory: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = position_biased(fake_engine_factory)

    def open_judge(options: JudgeOptions, **_: Any) -> Judge:
        return Judge(engine, template="instruct", decide=options.rule, tie_margin=options.margin)

    monkeypatch.setattr(session, "open_judge", open_judge)
    (tmp_path / "a.txt").write_text("Paris.")
    (tmp_path / "b.txt").write_text("Lyon.")
    files = (str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "-q", "Capital of France?", "--json")
    winners = {}
    for args in ((), ("--decide", "agreement"), ("--tie-margin", "0.2")):
        result = invoke_cli("compare", *files, *args)
        assert result.returncode == 0, result.stderr
        winners[args] = orjson.loads(result.stdout)["winner"]
    assert winners == {(): "A", ("--decide", "agreement"): "tie", ("--tie-margin", "0.2"): "tie"}
    bad = invoke_cli("compare", *files, "--tie-margin", "0.7")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--tie-margin 0.7: give a number" in bad.stderr


# -- the real engine ------------------------------------------------------------------------------

REAL_PAIRS = [
    Pair(question="What is the capital of France?", a="Paris.", b="Lyon."),
    Pair(question="How many legs does a spider have?", a="Six.", b="Eight."),
    Pair(question="What is 7 times 6?", a="42.", b="36."),
]


@pytest.mark.model
def test_real_rules_decide_from_the_same_readings(gemma_path: Path, tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "v.sqlite3")
    judge = Judge(model=str(gemma_path), template="instruct", max_tokens=0, cache=cache, decide="agreement")
    agreement = [j for j in judge.judge_many(REAL_PAIRS) if isinstance(j, Judgment)]
    by_mean = Judge(judge.engine, template="instruct", max_tokens=0, cache=cache, decide="probability")
    probability = [j for j in by_mean.judge_many(REAL_PAIRS) if isinstance(j, Judgment)]
    assert len(agreement) == len(probability) == 3
    for kept, decided in zip(agreement, probability, strict=True):
        assert all(o.cached for o in decided.orders)  # re-deciding generates nothing
        readings = [Trace(o.order, o.verdict, o.probability_a) for o in kept.orders]
        assert [Trace(o.order, o.verdict, o.probability_a) for o in decided.orders] == readings
        assert kept.winner == decide(readings, "agreement").winner
        assert decided.winner == decide(readings, "probability").winner
        assert decided.winner == ("A" if decided.probability_a > 0.5 else "B")
        if kept.consistent:
            assert decided.winner == kept.winner
        else:
            assert kept.winner == "tie"
