"""rmjudge eval: protocols, cache reuse, results files, reports, plots and bad input (scripted engine),
and all three protocols through the real engine (Gemma, a tiny budget)."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from rmjudge import cli, session
from rmjudge.cache import VerdictCache
from rmjudge.errors import ExitCode, InputError, UsageError
from rmjudge.evaluate import (
    LabelledPair,
    evaluate,
    load_pairs,
    official_order,
    read_results,
    rm_bench_matrix,
)
from rmjudge.judge import Judge
from rmjudge.metrics import PairResult, Skipped
from rmjudge.session import JudgeOptions

from .conftest import SHARED, FakeEngine, run_cli
from .test_judge import position_probability, prefers

EngineFactory = Callable[..., FakeEngine]
LLMBAR = SHARED / "data" / "llmbar.jsonl"


def line(id: str, chosen: str, rejected: str, subset: str = "s", prompt: str = "Which is right?") -> dict[str, str]:
    return {"id": id, "prompt": prompt, "chosen": chosen, "rejected": rejected, "subset": subset, "source": "test"}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n" for row in rows))
    return path


# Pairs for a model that prefers whatever says GOOD: right on g*, wrong on w*, and on n* (neither says
# it) it always picks the second-shown response, so the two orders disagree.
ROWS = [
    line("g1", "GOOD answer", "bad answer", "x"),
    line("g2", "GOOD and long answer here", "short", "x"),
    line("w1", "fine answer", "GOOD but wrong", "y"),
    line("n1", "one answer", "another answer", "y"),
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", ROWS)


@pytest.fixture
def engine(fake_engine_factory: EngineFactory) -> FakeEngine:
    return fake_engine_factory(script=prefers("GOOD"), probability_a=position_probability("GOOD", 0.9))


def make_judge(engine: FakeEngine, max_tokens: int | None = None) -> Judge:
    return Judge(engine=engine, template="instruct", max_tokens=max_tokens, cache=VerdictCache())


def pairs_of(path: Path) -> list[LabelledPair | Skipped]:
    return load_pairs(str(path))


def by_id(results: list[PairResult]) -> dict[str, PairResult]:
    return {r.id: r for r in results}


# -- protocols ------------------------------------------------------------------------------------


def test_both_judges_every_pair_in_both_orders(engine: FakeEngine, data: Path) -> None:
    results, skipped = evaluate(make_judge(engine), pairs_of(data), protocol="both")
    assert skipped == []
    assert len(engine.generate_calls) == 8
    found = by_id(results)
    assert [o.order for o in found["g1"].orders] == ["ab", "ba"]
    assert {i: r.winner for i, r in found.items()} == {"g1": "A", "g2": "A", "w1": "B", "n1": "tie"}
    assert {i: r.score for i, r in found.items()} == {"g1": 1.0, "g2": 1.0, "w1": 0.0, "n1": 0.5}
    assert [o.position_verdict for o in found["n1"].orders] == ["B", "B"]  # the second shown, both times
    assert (found["g2"].length_a, found["g2"].length_b) == (len("GOOD and long answer here"), len("short"))
    assert found["g1"].reason == "A is right."


def test_official_picks_one_order_per_pair_by_a_seeded_coin(fake_engine_factory: EngineFactory, tmp_path: Path) -> None:
    rows = [line(f"p{i}", f"GOOD {i}", f"bad {i}") for i in range(40)]
    items = pairs_of(write_jsonl(tmp_path / "many.jsonl", rows))

    def orders(seed: int, items: list[LabelledPair | Skipped]) -> dict[str, str]:
        engine = fake_engine_factory(script=prefers("GOOD"))
        results, _ = evaluate(Judge(engine=engine, template="instruct"), items, protocol="official", seed=seed)
        assert len(engine.generate_calls) == len(results) == len(items)  # one order each
        assert all(len(r.orders) == 1 and r.winner != "tie" for r in results)
        return {r.id: r.orders[0].order for r in results}

    first = orders(7, items)
    assert first == {f"p{i}": official_order(f"p{i}", 7) for i in range(40)}
    assert 10 <= sum(order == "ab" for order in first.values()) <= 30  # a fair coin, not one side
    assert orders(7, items) == first  # reproducible
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    some = shuffled[:25]
    assert orders(7, some) == {item.id: first[item.id] for item in some}  # per pair, not per position in the file
    assert orders(8, items) != first  # the seed decides


def test_verdict_only_reads_probabilities_with_no_generation(engine: FakeEngine, data: Path) -> None:
    judge = make_judge(engine, max_tokens=256)
    results, _ = evaluate(judge, pairs_of(data), protocol="verdict-only")
    assert engine.generate_calls == []
    assert len(engine.probability_calls) == 8  # both orders, one reading each
    assert all(o.tokens_out == 0 and o.forced for r in results for o in r.orders)
    found = by_id(results)
    # P(position A) 0.9 when GOOD is shown first: the verdicts follow the probabilities alone.
    assert found["g1"].winner == "A" and found["g1"].confidence == pytest.approx(0.9)
    assert found["w1"].winner == "B"
    assert judge.max_tokens == 256  # the caller's judge is left as it was


def test_switching_protocol_reuses_every_judgment_in_the_cache(engine: FakeEngine, data: Path) -> None:
    items = pairs_of(data)
    evaluate(make_judge(engine), items, protocol="both")
    assert len(engine.generate_calls) == 8
    official, _ = evaluate(make_judge(engine), items, protocol="official", seed=3)
    assert len(engine.generate_calls) == 8  # all cache hits
    assert all(o.cached for r in official for o in r.orders)

    evaluate(make_judge(engine), items, protocol="verdict-only")
    readings = len(engine.probability_calls)
    evaluate(make_judge(engine), items, protocol="verdict-only")
    assert len(engine.probability_calls) == readings  # budget 0 is cached too
    assert len(engine.generate_calls) == 8


def test_official_first_then_both_judges_only_the_missing_orders(engine: FakeEngine, data: Path) -> None:
    items = pairs_of(data)
    evaluate(make_judge(engine), items, protocol="official")
    assert len(engine.generate_calls) == 4
    both, _ = evaluate(make_judge(engine), items, protocol="both")
    assert len(engine.generate_calls) == 8
    assert all(sum(o.cached for o in r.orders) == 1 for r in both)


def test_a_pair_too_long_for_the_context_is_skipped_and_counted(
    fake_engine_factory: EngineFactory, tmp_path: Path
) -> None:  # fmt: skip
    engine = fake_engine_factory(script=prefers("GOOD"), context=6000)  # a character per token
    data = write_jsonl(tmp_path / "long.jsonl", [line("short", "GOOD", "bad"), line("long", "GOOD " * 1000, "bad")])
    results, skipped = evaluate(make_judge(engine), pairs_of(data))
    assert [r.id for r in results] == ["short"]
    assert [(s.id, s.reason) for s in skipped] == [("long", "too_long")]


# -- input ----------------------------------------------------------------------------------------


def test_broken_and_unlabelled_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "mixed.jsonl",
        [ROWS[0], b"{not json", ROWS[1], {"id": "bad", "prompt": "q", "chosen": 3, "rejected": "x"}, ROWS[2]],
    )
    items = pairs_of(data)
    assert [type(i).__name__ for i in items] == ["LabelledPair", "Skipped", "LabelledPair", "Skipped", "LabelledPair"]
    assert [(s.id, s.reason) for s in items if isinstance(s, Skipped)] == [("line 2", "broken"), ("bad", "broken")]
    tied = write_jsonl(
        tmp_path / "tie.jsonl",
        [{"question": "q", "answer_a": "x", "answer_b": "y", "label": label} for label in ("tie", "B")],
    )
    items = pairs_of(tied)
    assert isinstance(items[0], Skipped) and items[0].reason == "unlabelled"
    assert isinstance(items[1], LabelledPair) and items[1].label == "B" and items[1].id == "line 2"


def test_limit_counts_labelled_pairs_only(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [b"[]", *ROWS])
    items = load_pairs(str(data), limit=2)
    assert [i.id for i in items] == ["line 1", "g1", "g2"]


def test_no_labelled_pair_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no labelled pair"):
        load_pairs(str(write_jsonl(tmp_path / "bad.jsonl", [b"{oops", b"{oops"])))
    with pytest.raises(InputError, match="no such file"):
        load_pairs(str(tmp_path / "missing.jsonl"))


def test_rm_bench_matrix_builds_the_nine_style_pairs(tmp_path: Path) -> None:
    styles = [line(f"rmbench/chat/8/c{i}r{i}", f"chosen{i}", f"rejected{i}", "chat", prompt="Q8") for i in range(3)]
    incomplete = [line(f"rmbench/chat/9/c{i}r{i}", f"c{i}", f"r{i}", "chat") for i in range(2)]
    items = list(rm_bench_matrix(pairs_of(write_jsonl(tmp_path / "rm.jsonl", [*styles, *incomplete, ROWS[0]]))))
    matrix = [i for i in items if isinstance(i, LabelledPair) and i.id.startswith("rmbench/chat/8/")]
    assert [i.id for i in matrix] == [f"rmbench/chat/8/c{i}r{j}" for i in range(3) for j in range(3)]
    c0r2 = matrix[2]
    assert (c0r2.pair.a, c0r2.pair.b, c0r2.pair.question) == ("chosen0", "rejected2", "Q8")
    assert (c0r2.label, c0r2.subset) == ("A", "chat")
    assert [i.id for i in items[9:]] == ["rmbench/chat/9/c0r0", "rmbench/chat/9/c1r1", "g1"]  # unchanged


def test_rm_bench_matrix_on_the_shared_rm_bench_file(tmp_path: Path) -> None:
    lines = (SHARED / "data" / "rm_bench.jsonl").read_bytes().splitlines()[:6]  # two prompts x 3 styles
    data = write_jsonl(tmp_path / "rm.jsonl", lines)
    items = load_pairs(str(data), full_rm_bench=True)
    assert len(items) == 18
    assert load_pairs(str(data), full_rm_bench=True, limit=9) == items[:9]  # --limit counts the expanded pairs


# -- the command line (scripted engine) -----------------------------------------------------------


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch, fake_engine_factory: EngineFactory) -> Callable[..., Any]:
    """``rmjudge eval ARGS`` in process, its judge on a scripted engine (one per test, like one model)."""
    engine = fake_engine_factory(script=prefers("GOOD"), probability_a=position_probability("GOOD", 0.9))

    def open_judge(options: JudgeOptions, **_: Any) -> Judge:
        cache = None if options.no_cache else VerdictCache()
        return Judge(engine=engine, template="instruct", max_tokens=options.max_tokens, cache=cache)

    monkeypatch.setattr(session, "open_judge", open_judge)

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli.app, ["eval", *args])
        result.engine = engine
        return result

    return run


def test_cli_json_report(invoke: Callable[..., Any], data: Path) -> None:
    result = invoke(str(data), "--json")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["pairs"] == 4 and report["accuracy"]["value"] == pytest.approx(2.5 / 4)
    assert report["run"]["protocol"] == "both" and report["run"]["data"] == str(data)
    assert report["flip_rate"] == {"value": 0.25, "n": 4}
    assert set(report["subsets"]) == {"x", "y"}


def test_cli_out_and_from_give_the_identical_report(invoke: Callable[..., Any], data: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    judged = invoke(str(data), "--protocol", "official", "--seed", "5", "--out", str(out), "--json")
    assert judged.exit_code == 0, judged.output
    stored = read_results(out)
    assert len(stored.results) == 4 and stored.run["protocol"] == "official" and stored.run["seed"] == 5
    recomputed = invoke("--from", str(out), "--json")
    assert recomputed.exit_code == 0, recomputed.output
    assert recomputed.stdout == judged.stdout
    assert len(judged.engine.generate_calls) == 4  # --from judged nothing


def test_cli_skipped_lines_are_reported_counted_and_kept_in_the_results(
    invoke: Callable[..., Any], tmp_path: Path
) -> None:  # fmt: skip
    data = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], b"{broken", ROWS[1]])
    out = tmp_path / "r.jsonl"
    result = invoke(str(data), "--out", str(out), "--json")
    assert result.exit_code == 0
    assert "skipped line 2" in result.stderr
    report = orjson.loads(result.stdout)
    assert report["pairs"] == 2 and report["skipped"] == {"broken": 1}
    assert orjson.loads(invoke("--from", str(out), "--json").stdout)["skipped"] == {"broken": 1}


def test_cli_terminal_report_and_compare(
    invoke: Callable[..., Any], data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    both = tmp_path / "both.json"
    both.write_text(invoke(str(data), "--json").stdout)
    verdict_only = tmp_path / "vo.json"
    verdict_only.write_text(invoke(str(data), "--protocol", "verdict-only", "--json").stdout)
    results = _results(invoke, data, tmp_path)
    monkeypatch.setattr("rmjudge.render.console.wants_json", lambda flag: flag)  # as on a terminal
    table = invoke("--from", str(results))
    assert table.exit_code == 0
    for text in ("Accuracy", "62.5%", "Flip rate", "25.0% of 4 pairs", "First position wins", "Cache"):
        assert text in table.stdout

    compared = invoke("--compare", str(both), str(verdict_only), "--json")
    assert compared.exit_code == 0, compared.output
    rows = {row["metric"]: row for row in orjson.loads(compared.stdout)["metrics"]}
    assert rows["accuracy"]["a"] == pytest.approx(2.5 / 4)
    assert rows["tokens:generated_per_judgment"]["b"] == 0.0
    assert rows["tokens:generated_per_judgment"]["delta"] == -rows["tokens:generated_per_judgment"]["a"]
    human = invoke("--compare", str(both), str(verdict_only))
    assert "b - a" in human.stdout and "accuracy" in human.stdout and "tokens:generated_per_judgment" in human.stdout


def _results(invoke: Callable[..., Any], data: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results.jsonl"
    assert invoke(str(data), "--out", str(out), "--json").exit_code == 0
    return out


def test_cli_rm_bench_report(invoke: Callable[..., Any], tmp_path: Path) -> None:
    styled = ["plain", "detailed", "detailed **markdown**"]
    rows = [line(f"rmbench/chat/1/c{i}r{i}", f"GOOD {styled[i]}", f"bad {styled[i]}", "chat") for i in range(3)]
    result = invoke(str(write_jsonl(tmp_path / "rm.jsonl", rows)), "--rm-bench-matrix", "--json")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["pairs"] == 9
    assert {level: report["rm_bench"][level] for level in ("easy", "normal", "hard")} == {
        "easy": {"value": 1.0, "n": 3}, "normal": {"value": 1.0, "n": 3}, "hard": {"value": 1.0, "n": 3},
    }  # fmt: skip
    assert report["rm_bench"]["subsets"]["chat"]["hard"]["n"] == 3


def test_cli_plot_writes_a_png(invoke: Callable[..., Any], data: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "report.png"
    result = invoke(str(data), "--plot", str(png), "--json")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_plot_without_matplotlib_says_what_to_install(
    invoke: Callable[..., Any], data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails, as when it is not installed
    result = invoke(str(data), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == ExitCode.USAGE
    assert "pip install 'rmjudge[plot]'" in result.stderr
    assert result.engine.generate_calls == []  # refused before judging anything


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), ExitCode.USAGE, "give one of"),
        (("{data}", "--from", "{data}"), ExitCode.USAGE, "give one of"),
        (("{data}", "--protocol", "best"), ExitCode.USAGE, "use both, official or verdict-only"),
        (("{data}", "--protocol", "verdict-only", "--max-tokens", "64"), ExitCode.USAGE, "leave --max-tokens out"),
        (("{data}", "--limit", "0"), ExitCode.USAGE, "1 or more"),
        (("{data}", "--out", "{data}"), ExitCode.USAGE, "is the input file"),
        (("{data}", "--plot", "{tmp}/p.xyz"), ExitCode.USAGE, "end the file name with one of"),
        (("{data}", "--map", "nonsense"), ExitCode.USAGE, "ROLE=FIELD"),
        (("--from", "{data}", "--limit", "3"), ExitCode.USAGE, "apply when judging DATA"),
        (("--from", "{data}"), ExitCode.INPUT, "not an rmjudge eval result line"),
        (("--from", "{tmp}/none.jsonl"), ExitCode.INPUT, "no such file"),
        (("--compare", "{data}", "{data}"), ExitCode.INPUT, "is not JSON"),
        (("--compare", "{tmp}/none.json", "{data}"), ExitCode.INPUT, "no such file"),
        (("--compare", "{data}", "{data}", "--plot", "{tmp}/p.png"), ExitCode.USAGE, "takes none of"),
        (("{tmp}/none.jsonl",), ExitCode.INPUT, "no such file"),
        (("{tmp}/odd.jsonl",), ExitCode.INPUT, "fits no known pair schema"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line_and_an_exit_code(
    invoke: Callable[..., Any], data: Path, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:  # fmt: skip
    write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1}])
    result = invoke(*(a.format(data=data, tmp=tmp_path) for a in args))
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.engine.generate_calls == []


def test_compare_refuses_a_json_file_that_is_not_a_report(invoke: Callable[..., Any], tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"winner": "A"}')
    result = invoke("--compare", str(other), str(other))
    assert result.exit_code == ExitCode.INPUT and "not an rmjudge eval report" in result.stderr


def test_usage_errors_are_raised_before_any_model_work() -> None:
    from rmjudge.evaluate import check_protocol

    with pytest.raises(UsageError):
        check_protocol("verdict-only", 16)
    check_protocol("verdict-only", 0)


# -- the real engine ------------------------------------------------------------------------------


@pytest.mark.model
def test_three_protocols_through_the_cli_with_gemma(gemma_path: Path, tmp_path: Path) -> None:
    rows = [orjson.loads(raw) for raw in LLMBAR.read_bytes().splitlines()]
    short = sorted(rows, key=lambda r: len(r["prompt"]) + len(r["chosen"]) + len(r["rejected"]))[:3]
    data = write_jsonl(tmp_path / "llmbar3.jsonl", short)
    reports: dict[str, dict[str, Any]] = {}
    for protocol in ("both", "official", "verdict-only"):
        budget = () if protocol == "verdict-only" else ("--max-tokens", "8")
        out = tmp_path / f"{protocol}.jsonl"
        args = ("--model", str(gemma_path), "--protocol", protocol, *budget, "--out", str(out), "--json")
        result = run_cli("eval", str(data), *args)
        assert result.returncode == 0, result.stderr
        report = orjson.loads(result.stdout)
        reports[protocol] = report
        assert report["pairs"] == 3 and report["skipped"] == {}
        assert report["run"]["protocol"] == protocol and report["run"]["model"]["file"] == gemma_path.name
        assert 0.0 <= report["accuracy"]["value"] <= 1.0
        assert report["accuracy"]["low"] <= report["accuracy"]["value"] <= report["accuracy"]["high"]
        assert report["tokens"]["prompt_per_judgment"] > 100
        assert len(read_results(out).results) == 3
    both, official, verdict_only = reports["both"], reports["official"], reports["verdict-only"]
    assert both["flip_rate"]["n"] == 3 and both["first_position_rate"]["n"] == 6
    assert both["run"]["sampling"]["max_tokens"] == 8 and 0 < both["tokens"]["generated_per_judgment"] <= 8
    assert both["speed"]["cache_hit_rate"] == 0.0 and both["speed"]["pairs_per_minute"] > 0
    # official: one order per pair, every one already judged by the run before
    assert official["flip_rate"] == {"value": None, "n": 0} and official["first_position_rate"]["n"] == 3
    assert official["tie_rate"]["value"] == 0.0
    assert official["speed"]["cache_hit_rate"] == 1.0
    # verdict-only: no reasoning at all
    assert verdict_only["run"]["sampling"]["max_tokens"] == 0
    assert verdict_only["tokens"]["generated_per_judgment"] == 0.0 and verdict_only["flip_rate"]["n"] == 3
