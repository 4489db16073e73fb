"""Ranking: the Bradley-Terry fit and the strategies on synthetic judgments with a known order, then
each strategy on the real Gemma GGUF."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from rmjudge import rank_io
from rmjudge.bradley_terry import REFERENCE, fit, fit_bradley_terry, win_counts
from rmjudge.cache import VerdictCache
from rmjudge.errors import ContextTooLongError, ExitCode, InputError, RmjudgeError, UsageError
from rmjudge.judge import Judge, Judgment
from rmjudge.prompts import Message, Pair
from rmjudge.rank import rank
from rmjudge.rank_strategies import adaptive_budget
from rmjudge.ranking import Comparison
from tests.conftest import run_cli
from tests.judges import StrengthJudge

QUESTION = "Which answer is best?"


def texts(count: int, prefix: str = "draft") -> list[str]:
    return [f"{prefix} {i}" for i in range(count)]


def strength_judge(strengths: list[float], **options: object) -> tuple[StrengthJudge, list[str]]:
    candidates = texts(len(strengths))
    return StrengthJudge(dict(zip(candidates, strengths)), **options), candidates  # type: ignore[arg-type]


# -- the fit -----------------------------------------------------------------------------------


def test_bradley_terry_recovers_known_strengths_from_expected_wins() -> None:
    true = np.array([1.5, 0.5, 0.0, -0.5, -1.5])
    games = 200  # per pair, so the light prior hardly matters
    p = 1.0 / (1.0 + np.exp(-(true[:, None] - true[None, :])))
    wins = games * p
    np.fill_diagonal(wins, 0.0)
    theta = fit_bradley_terry(wins)
    assert np.allclose(theta, true - true.mean(), atol=0.02)
    assert abs(theta.mean()) < 1e-9


def test_all_wins_stay_finite_and_ordered() -> None:
    wins = np.zeros((3, 3))
    wins[0, 1] = wins[0, 2] = wins[1, 2] = 1.0  # 0 beats everyone, 1 beats 2: separable data
    theta = fit_bradley_terry(wins)
    assert np.all(np.isfinite(theta))
    assert theta[0] > theta[1] > theta[2]
    assert theta[0] - theta[2] < 20


def test_a_tie_counts_half_for_each() -> None:
    judge, (a, b) = strength_judge([0.0, 0.0], bias=2.0)  # each order picks whatever is shown first
    judgment = judge.judge(Pair(a, b, QUESTION))
    assert judgment.winner == "tie"
    comparison = Comparison(0, 1, judgment)
    assert comparison.outcome("verdict") == 0.5
    wins = win_counts([comparison], 2)
    assert wins[0, 1] == wins[1, 0] == 0.5
    assert np.allclose(fit_bradley_terry(wins), 0.0)


def test_probability_outcome_counts_the_averaged_probability() -> None:
    judge, (a, b) = strength_judge([0.4, 0.0])
    comparison = Comparison(0, 1, judge.judge(Pair(a, b, QUESTION)))
    assert comparison.outcome("verdict") == 1.0
    assert comparison.outcome("probability") == pytest.approx(1 / (1 + math.exp(-0.4)))


def test_the_same_judgments_in_any_order_give_the_same_report() -> None:
    judge, candidates = strength_judge([1.0, 0.3, 0.0, -0.2, -1.0], noise=1.0)
    ranking = rank(judge, QUESTION, candidates, strategy="round-robin", seed=3)
    shuffled = list(ranking.comparisons)
    random.Random(1).shuffle(shuffled)
    first = fit(ranking.comparisons, 5, seed=3)
    again = fit(shuffled, 5, seed=3)
    assert np.array_equal(first.intervals, again.intervals)
    assert np.array_equal(first.top_probability, again.top_probability)
    assert np.allclose(first.scores, ranking.scores)
    other_seed = fit(shuffled, 5, seed=4)
    assert not np.array_equal(first.intervals, other_seed.intervals)


# -- the strategies ----------------------------------------------------------------------------


def test_round_robin_orders_by_hidden_strength_in_one_batch() -> None:
    strengths = [0.2, 1.5, -0.7, 0.9, -1.8]
    judge, candidates = strength_judge(strengths)
    ranking = rank(judge, QUESTION, candidates, strategy="round-robin")
    assert ranking.order == sorted(range(5), key=lambda i: -strengths[i])
    assert ranking.best == 1
    assert [len(call) for call in judge.calls] == [10]  # all pairs in one judge_many stream
    assert ranking.cost.comparisons == 10 and ranking.cost.judgments == 20
    assert ranking.stopped == "complete" and ranking.strategy == "round-robin"
    # The win matrix: P(row beats column), complementary, None on the diagonal.
    matrix = ranking.win_matrix
    for i in range(5):
        assert matrix[i][i] is None
        for j in range(5):
            if i != j:
                assert matrix[i][j] + matrix[j][i] == pytest.approx(1.0)  # type: ignore[operator]
                assert (matrix[i][j] > 0.5) == (strengths[i] > strengths[j])  # type: ignore[operator]
    low, high = ranking.intervals[1]
    assert low <= ranking.scores[1] <= high
    assert ranking.top_probability[1] == max(ranking.top_probability)
    assert sum(ranking.top_probability) == pytest.approx(1.0)


def test_single_order_judge_alternates_who_is_shown_first() -> None:
    judge, candidates = strength_judge([0.0] * 6, order="ab")
    ranking = rank(judge, QUESTION, candidates, strategy="round-robin")
    assert ranking.cost.judgments == ranking.cost.comparisons == 15
    first = [sum(c.a == i for c in ranking.comparisons) for i in range(6)]
    assert all(2 <= shown <= 3 for shown in first)  # each meets 5 others: first in about half


def test_reference_strategy_scores_each_against_the_reference() -> None:
    judge, candidates = strength_judge([0.8, -0.4, 0.1])
    judge.strengths["gold"] = 0.0
    ranking = rank(judge, QUESTION, candidates, reference="gold")
    assert ranking.strategy == "reference"  # auto with a reference
    assert ranking.order == [0, 2, 1]
    assert len(judge.calls) == 1 and [(c.a, c.b) for c in ranking.comparisons] == [
        (0, REFERENCE),
        (1, REFERENCE),
        (2, REFERENCE),
    ]
    assert ranking.reference_probability == pytest.approx([1 / (1 + math.exp(-s)) for s in (0.8, -0.4, 0.1)])
    assert ranking.scores[0] > 0 > ranking.scores[1]  # relative to the reference
    assert all(row == [None] * 3 for row in ranking.win_matrix)


def test_knockout_finds_the_best_with_n_minus_one_comparisons() -> None:
    strengths = [0.1, -0.3, 0.7, 2.0, -1.0, 0.4, 0.0]
    judge, candidates = strength_judge(strengths)
    ranking = rank(judge, QUESTION, candidates, strategy="knockout", seed=5)
    assert ranking.best == 3
    assert ranking.cost.comparisons == 6
    assert [len(call) for call in judge.calls] == [3, 2, 1]  # a round at a time: 7 -> 4 (one bye) -> 2 -> 1


def test_adaptive_finds_the_top_with_fewer_comparisons_in_rounds() -> None:
    strengths = [0.3, -1.2, 0.8, -0.1, 2.2, 0.5, -0.6, 1.1, -2.0, 0.0]
    judge, candidates = strength_judge(strengths, noise=0.3)
    ranking = rank(judge, QUESTION, candidates)  # auto: adaptive above 6
    assert ranking.strategy == "adaptive"
    assert ranking.best == 4
    assert ranking.stopped == "settled"
    assert ranking.cost.comparisons <= adaptive_budget(10) < 45
    assert len(judge.calls[0]) == 5  # the first round: everyone meets one other
    assert all(len(call) >= 1 for call in judge.calls) and len(judge.calls) < ranking.cost.comparisons
    pairs = [(min(c.a, c.b), max(c.a, c.b)) for c in ranking.comparisons]
    assert len(set(pairs)) == len(pairs)  # a pair is never judged twice


def test_adaptive_top_agrees_with_round_robin_on_noisy_judges() -> None:
    """On seeded noisy synthetic sets, adaptive's first place is round-robin's at least 9 times in 10,
    with fewer comparisons."""
    rng = np.random.default_rng(7)
    agree, used = 0, 0
    trials = 30
    for trial in range(trials):
        judge, candidates = strength_judge(list(rng.normal(0.0, 1.0, 8)), noise=1.0, bias=0.3, seed=trial)
        full = rank(judge, QUESTION, candidates, strategy="round-robin", resamples=0)
        adaptive = rank(judge, QUESTION, candidates, strategy="adaptive", seed=trial, resamples=0)
        agree += adaptive.best == full.best
        used += adaptive.cost.comparisons
    assert agree >= 0.9 * trials
    assert used / trials < 28


def test_rank_is_reproducible() -> None:
    judge, candidates = strength_judge(list(np.linspace(-1, 1, 9)), noise=1.0)
    first = rank(judge, QUESTION, candidates, seed=11)
    again = rank(judge, QUESTION, candidates, seed=11)
    assert first.to_dict() == again.to_dict() | {"cost": first.to_dict()["cost"]}


def test_ranking_serialises_to_json() -> None:
    judge, candidates = strength_judge([0.5, 0.0, -0.5])
    data = orjson.loads(orjson.dumps(rank(judge, QUESTION, candidates, names=["x.md", "y.md", "z.md"]).to_dict()))
    assert data["best"] == 0 and data["ranking"][0]["name"] == "x.md"
    assert data["cost"]["comparisons"] == data["cost"]["possible_comparisons"] == 3
    assert data["comparisons"][0]["winner"] == 0
    assert data["model"]["file"] == "strengths"


def test_conversation_reaches_the_judge() -> None:
    judge, candidates = strength_judge([0.5, 0.0])
    turns = [Message("user", "hi"), Message("assistant", "hello"), Message("user", "which?")]
    rank(judge, None, candidates, conversation=turns)
    assert judge.calls[0][0].conversation == tuple(turns) and judge.calls[0][0].is_multi_turn


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "error", "code", "message"),
    [
        (["only one"], UsageError, ExitCode.USAGE, "at least two candidates, got 1"),
        ([], UsageError, ExitCode.USAGE, "got 0"),
        (["a", "  \n"], InputError, ExitCode.INPUT, "candidates[1] is empty"),
        (["a", "b", "a "], InputError, ExitCode.INPUT, "candidates[2] is the same text as candidates[0]"),
    ],
)
def test_bad_candidates_fail_before_judging(
    candidates: list[str], error: type[RmjudgeError], code: int, message: str
) -> None:
    judge = StrengthJudge({text: 0.0 for text in candidates})
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")) as raised:
        rank(judge, QUESTION, candidates)
    assert raised.value.exit_code == code
    assert "\n" not in str(raised.value)
    assert judge.calls == []


def test_a_candidate_too_long_is_named_before_judging() -> None:
    candidates = ["short", "x" * 50, "fine"]
    judge = StrengthJudge({text: 0.0 for text in candidates}, context=30)
    with pytest.raises(ContextTooLongError, match=r"^long\.md is too long") as raised:
        rank(judge, QUESTION, candidates, names=["a.md", "long.md", "c.md"])
    assert raised.value.exit_code == ExitCode.CONTEXT
    assert judge.calls == []


def test_two_long_candidates_together_are_named() -> None:
    candidates = ["x" * 20, "y" * 20, "z"]  # each fits beside "z", not beside each other
    judge = StrengthJudge({text: 0.0 for text in candidates}, context=30)
    with pytest.raises(ContextTooLongError, match=r"candidates\[0\] and candidates\[1\] together are too long"):
        rank(judge, QUESTION, candidates, strategy="round-robin")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "best"}, "--strategy 'best'"),
        ({"strategy": "reference"}, "needs a reference text"),
        ({"strategy": "knockout", "reference": "gold"}, "used only by --strategy reference"),
        ({"outcome": "votes"}, "--outcome 'votes'"),
        ({"reference": "  "}, "the reference is empty"),
        ({"strategy": "adaptive", "max_comparisons": 0}, "--max-comparisons must be 1 or more"),
    ],
)
def test_bad_options(options: dict[str, object], message: str) -> None:
    judge, candidates = strength_judge([0.0, 1.0, 2.0])
    with pytest.raises(RmjudgeError, match=message):
        rank(judge, QUESTION, candidates, **options)  # type: ignore[arg-type]


def test_a_judge_error_stops_the_ranking_with_its_own_exit_code() -> None:
    class Failing(StrengthJudge):
        def judge_many(self, pairs: Iterable[Pair]) -> Iterator[Judgment | RmjudgeError]:
            for _ in pairs:
                yield InputError("the server refused the request")

    judge = Failing({"a": 0.0, "b": 0.0})
    with pytest.raises(InputError, match="the server refused"):
        rank(judge, QUESTION, ["a", "b"])


# -- the real model ----------------------------------------------------------------------------


CANDIDATES = ["The capital of France is Paris.", "Paris.", "It is Lyon.", "London is the capital of France."]


@pytest.mark.model
def test_every_strategy_on_gemma(gemma_path: Path, tmp_path: Path) -> None:
    # One verdict cache: a pair judged by one strategy is not judged again by the next.
    judge = Judge(gemma_path, max_tokens=0, cache=VerdictCache(tmp_path / "v.sqlite3"))
    question = "What is the capital of France?"
    results = {
        strategy: judge.rank(question, CANDIDATES, strategy=strategy, seed=1)
        for strategy in ("round-robin", "adaptive", "knockout")
    }
    results["reference"] = judge.rank(question, CANDIDATES[1:], reference=CANDIDATES[0])
    full = results["round-robin"]
    assert full.outcome == "probability"  # verdict-only judge
    assert full.cost.comparisons == 6 and full.cost.judgments == 12
    assert sorted(full.order) == [0, 1, 2, 3]
    for i in range(4):
        for j in range(4):
            if i != j:
                p = full.win_matrix[i][j]
                assert p is not None and 0.0 < p < 1.0
    # The model's own numbers decide the order: the best has the highest mean P(beats the others).
    mean_win = [np.mean([p for p in row if p is not None]) for row in full.win_matrix]
    assert full.best == int(np.argmax(mean_win))
    assert results["knockout"].cost.comparisons == 3
    assert results["adaptive"].cost.comparisons <= 6
    assert results["adaptive"].cost.cached == 2 * results["adaptive"].cost.comparisons  # all seen in round-robin
    reference = results["reference"]
    assert reference.cost.comparisons == 3
    assert reference.reference_probability is not None
    assert reference.order == sorted(range(3), key=lambda i: -reference.reference_probability[i])  # type: ignore[index]
    assert all(0.0 < p < 1.0 for p in reference.reference_probability)
    orjson.dumps(full.to_dict(raw=True))


# -- input and output --------------------------------------------------------------------------


def write_lines(path: Path, *rows: object) -> Path:
    path.write_bytes(b"".join((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n" for row in rows))
    return path


def test_jsonl_lines_are_parsed_each_with_its_own_error(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        {"id": 1, "prompt": "Q?", "responses": ["a", "b"], "reference": "gold"},
        {"prompt": "Earlier\n\nAssistant: reply\n\nHuman: Now?", "responses": ["a", "b"]},
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
            "responses": ["a", "b"],
        },
        {"responses": ["a", "b"]},
        {"prompt": "Q?", "responses": "a"},
        b"{broken",
        b"[1, 2]",
        {"prompt": [{"role": "assistant", "content": "x"}], "responses": ["a", "b"]},
    )
    lines = list(rank_io.read_rank_lines(str(source), reference="default gold"))
    assert [line.line for line in lines] == list(range(1, 9))
    first, transcript, messages = (line.request for line in lines[:3])
    assert first is not None and first.reference == "gold" and first.names == ["responses[0]", "responses[1]"]
    assert transcript is not None and transcript.question is None
    assert [m.role for m in transcript.conversation] == ["user", "assistant", "user"]
    assert messages is not None and messages.question == "Be brief.\n\nQ?" and messages.reference == "default gold"
    errors = [str(line.error) for line in lines[3:]]
    assert 'missing field "prompt"' in errors[0]
    assert '"responses" must be a list' in errors[1]
    assert errors[2].startswith("not valid JSON")
    assert "must be a JSON object" in errors[3]
    assert "must end with a user turn" in errors[4]
    assert all(line.error.exit_code == ExitCode.INPUT for line in lines[3:])  # type: ignore[union-attr]


def test_jsonl_ranking_writes_each_line_with_fields_passed_through(tmp_path: Path) -> None:
    judge = StrengthJudge({"good": 1.0, "bad": -1.0, "ok": 0.0})
    source = write_lines(
        tmp_path / "in.jsonl",
        {"id": "x", "prompt": "Q?", "responses": ["bad", "good", "ok"]},
        {"id": "y", "prompt": "Q?", "responses": ["good"]},
        {"id": "z", "prompt": "Q?", "responses": ["ok", "good"]},
    )
    rows: list[dict[str, object]] = []
    warnings: list[str] = []
    summary = rank_io.rank_lines(rank_io.read_rank_lines(str(source)), lambda: judge, rows.append, warn=warnings.append)
    assert [row["id"] for row in rows] == ["x", "y", "z"]
    ranked = rows[0]["rmjudge"]
    assert isinstance(ranked, dict) and ranked["order"] == [1, 2, 0] and ranked["line"] == 1
    assert ranked["ranking"][0]["name"] == "responses[1]"
    assert rows[1]["rmjudge"] == {
        "error": "ranking needs at least two candidates, got 1: give two or more",
        "line": 2,
        "exit_code": ExitCode.USAGE,
    }
    assert rows[2]["rmjudge"]["best"] == 1  # type: ignore[index]
    assert warnings == ["line 2: ranking needs at least two candidates, got 1: give two or more"]
    assert (summary.ranked, summary.failed, summary.exit_code) == (2, 1, ExitCode.NEGATIVE)


def test_ranking_table() -> None:
    from rich.console import Console

    from rmjudge.render import ranking as rendering

    judge, candidates = strength_judge([0.0, 1.0, -1.0])
    result = rank(judge, QUESTION, candidates, names=["a.md", "b.md", "c.md"])
    console = Console(record=True, width=120)
    original, rendering.stdout = rendering.stdout, console  # type: ignore[attr-defined]
    try:
        rendering.print_ranking(result)
    finally:
        rendering.stdout = original  # type: ignore[attr-defined]
    text = console.export_text()
    rows = [line for line in text.splitlines() if ".md" in line]
    cells = [[cell.strip() for cell in row.split("│")[1:4]] for row in rows]
    assert cells == [["1", "b.md", "+3.39"], ["2", "a.md", "+0.00"], ["3", "c.md", "-3.39"]]
    assert "P(beats others)" in text
    assert "3 of 3 comparisons (6 judgments) · " in text and "scores from verdicts" in text


# -- the command line --------------------------------------------------------------------------


def files(tmp_path: Path, **texts: str) -> list[str]:
    paths = []
    for name, text in texts.items():
        (tmp_path / f"{name}.md").write_text(text)
        paths.append(str(tmp_path / f"{name}.md"))
    return paths


@pytest.mark.parametrize(
    ("texts", "code", "message"),
    [
        ({"one": "only"}, ExitCode.USAGE, "ranking needs at least two candidates, got 1"),
        ({"one": "text", "two": "\n"}, ExitCode.INPUT, "two.md is empty"),
        ({"one": "same", "two": "other", "three": "same"}, ExitCode.INPUT, "three.md is the same text as"),
    ],
)
def test_cli_bad_candidates_fail_before_a_model_loads(
    tmp_path: Path, texts: dict[str, str], code: int, message: str
) -> None:
    result = run_cli("rank", *files(tmp_path, **texts), "-q", "Which?", "--model", str(tmp_path / "none.gguf"))
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_cli_usage_errors(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", {"prompt": "Q?", "responses": ["a", "b"]})
    result = run_cli("rank", str(source), "-q", "Q?")
    assert result.returncode == ExitCode.USAGE and "-q is for candidate files" in result.stderr
    two = files(tmp_path, a="one", b="two")
    result = run_cli("rank", *two, "--strategy", "reference")
    assert result.returncode == ExitCode.USAGE and "needs a reference text" in result.stderr
    result = run_cli("rank", *two, "--reference", str(tmp_path / "missing.md"))
    assert result.returncode == ExitCode.INPUT and "missing.md: no such file" in result.stderr


def test_cli_jsonl_lines_that_cannot_be_ranked_need_no_model(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        {"id": 1, "prompt": "Q?", "responses": ["a"]},
        {"id": 2, "prompt": "Q?", "responses": ["a", ""]},
        b"not json",
    )
    result = run_cli("rank", str(source), "--model", str(tmp_path / "none.gguf"))
    assert result.returncode == ExitCode.NEGATIVE, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [row.get("id") for row in rows] == [1, 2, None]
    assert [row["rmjudge"]["exit_code"] for row in rows] == [ExitCode.USAGE, ExitCode.INPUT, ExitCode.INPUT]
    assert rows[1]["rmjudge"]["error"] == "responses[1] is empty: remove it or give it a text"
    assert "0 rankings, 3 failed" in result.stderr


@pytest.mark.model
def test_cli_rank_on_gemma(gemma_path: Path, tmp_path: Path) -> None:
    model = ("--model", str(gemma_path), "--max-tokens", "0")
    paths = files(tmp_path, paris="Paris.", lyon="It is Lyon.", london="London.")
    result = run_cli("rank", *paths, "-q", "What is the capital of France?", "--strategy", "knockout", *model)
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["strategy"] == "knockout" and data["cost"]["comparisons"] == 2
    assert sorted(row["name"] for row in data["ranking"]) == sorted(paths)
    assert data["model"]["file"] == gemma_path.name
    # JSONL: a good line, then a line with a response longer than the model's context (exit 5 in its row).
    long = "The quick brown fox jumps over the lazy dog. " * 4000  # ~40k tokens; Gemma has 32k
    source = write_lines(
        tmp_path / "in.jsonl",
        {"id": "ok", "prompt": "What is the capital of France?", "responses": ["Paris.", "London."]},
        {"id": "long", "prompt": "Q?", "responses": ["short", long, "also short"]},
    )
    result = run_cli("rank", str(source), "--reference", paths[0], *model)  # same cache: already judged pairs
    assert result.returncode == ExitCode.NEGATIVE, result.stderr
    ok, failed = (orjson.loads(line) for line in result.stdout.splitlines())
    assert ok["id"] == "ok" and ok["rmjudge"]["strategy"] == "reference" and ok["rmjudge"]["cost"]["comparisons"] == 2
    assert failed["rmjudge"]["exit_code"] == ExitCode.CONTEXT
    assert failed["rmjudge"]["error"].startswith("responses[1] is too long: the prompt is ")
    assert "line 2: responses[1] is too long" in result.stderr
    # A candidate file too long for the context: exit 5, the file named, before any judging.
    (tmp_path / "long.md").write_text(long)
    result = run_cli("rank", paths[0], str(tmp_path / "long.md"), *model)
    assert result.returncode == ExitCode.CONTEXT
    assert f"{tmp_path / 'long.md'} is too long" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_of_two_candidates_the_long_one_is_named() -> None:
    candidates = ["short", "x" * 50]
    judge = StrengthJudge({text: 0.0 for text in candidates}, context=30)
    with pytest.raises(ContextTooLongError, match=r"^candidates\[1\] is too long"):
        rank(judge, QUESTION, candidates)
