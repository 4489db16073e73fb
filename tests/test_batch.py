"""``rmjudge batch``: order, pass-through, labels, error records, --strict, --resume, Ctrl-C, the cache.

Orchestration is tested with the FakeEngine (a scripted model); the ``model`` tests run a real GGUF
through the CLI: interrupted with SIGINT, resumed, and served from the cache on a second run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import pytest

from rmjudge.batch import BatchSummary, LineFailed, run_batch
from rmjudge.cache import VerdictCache, default_cache_path
from rmjudge.errors import ExitCode, Terminated, UsageError
from rmjudge.judge import Judge
from rmjudge.output import Interrupts
from tests.conftest import ROOT, SHARED, FakeEngine, invoke_cli, run_cli

# -- a scripted judge: it prefers the text that contains "good" --------------------------------

_SECTION = (
    r"\[The Start of (?:Chatbot {0}'s Response|the Conversation between Chatbot {0} and the Client)\]\n"
    r"(.*?)\n\[The End of"
)


def _prefers(prompt: str) -> str:
    shown_a = re.search(_SECTION.format("A"), prompt, re.DOTALL)
    assert shown_a is not None
    return "A" if "good" in shown_a.group(1) else "B"


def _script(prompt: str) -> str:
    return f"<type>Chat</type>\n<eval>One is good.</eval>\n<answer>[[{_prefers(prompt)}]]</answer>"


def _probability_a(prompt: str) -> float:
    return 0.9 if _prefers(prompt) == "A" else 0.2


@pytest.fixture
def fake(fake_engine_factory: Callable[..., FakeEngine]) -> FakeEngine:
    return fake_engine_factory(script=_script, probability_a=_probability_a, context=4000)


@pytest.fixture
def judge(fake: FakeEngine, tmp_path: Path) -> Judge:
    return Judge(engine=fake, cache=VerdictCache(tmp_path / "verdicts.sqlite3"))


def pair_row(n: int, chosen: str = "a good answer", rejected: str = "a poor answer", **extra: Any) -> dict[str, Any]:
    return {"id": f"p{n}", "prompt": f"Question {n}?", "chosen": chosen, "rejected": rejected, "subset": "s", **extra}


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines))
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def batch(judge: Judge, source: Path, output: Path, **options: Any) -> BatchSummary:
    return run_batch(str(source), str(output), lambda: judge, progress=False, **options)


# -- order, pass-through, labels -----------------------------------------------------------------


def test_one_output_line_per_input_line_in_order_with_input_fields_intact(judge: Judge, tmp_path: Path) -> None:
    inputs = [pair_row(1), pair_row(2, chosen="a poor one", rejected="a good one"), "{broken", pair_row(4), pair_row(5)]
    source = write_lines(tmp_path / "in.jsonl", inputs)
    summary = batch(judge, source, tmp_path / "out.jsonl")
    rows = read_rows(tmp_path / "out.jsonl")
    assert [row["rmjudge"]["line"] for row in rows] == [1, 2, 3, 4, 5]
    for row, given in zip(rows, inputs, strict=True):
        if isinstance(given, dict):
            assert {k: v for k, v in row.items() if k != "rmjudge"} == given
    assert (summary.judged, summary.failed, summary.exit_code) == (4, 1, ExitCode.NEGATIVE)


def test_label_agreement_and_ties(judge: Judge, tmp_path: Path) -> None:
    inputs = [
        pair_row(1),  # the judge prefers chosen: agrees
        pair_row(2, chosen="a poor answer", rejected="a good answer"),  # prefers rejected: disagrees
        pair_row(3, chosen="good", rejected="also good"),  # each order picks the first text: a tie
    ]
    summary = batch(judge, write_lines(tmp_path / "in.jsonl", inputs), tmp_path / "out.jsonl")
    blocks = [row["rmjudge"] for row in read_rows(tmp_path / "out.jsonl")]
    assert [(b["winner"], b["label"], b["agrees"]) for b in blocks] == [
        ("A", "A", True),
        ("B", "A", False),
        ("tie", "A", False),
    ]
    assert blocks[0]["consistent"] and not blocks[2]["consistent"]
    assert [o["order"] for o in blocks[0]["orders"]] == ["ab", "ba"]
    assert blocks[0]["confidence"] == pytest.approx(0.85)  # (0.9 + (1 - 0.2)) / 2
    assert blocks[0]["reason"] == "One is good."
    assert (summary.ties, summary.labelled, summary.agreed) == (1, 3, 1)
    assert "agrees with the label on 1/3" in summary.line() and "1 ties" in summary.line()


def test_unlabelled_input_has_agrees_null(judge: Judge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"prompt": "Q", "response_a": "good", "response_b": "meh"}])
    summary = batch(judge, source, tmp_path / "out.jsonl")
    (block,) = [row["rmjudge"] for row in read_rows(tmp_path / "out.jsonl")]
    assert (block["winner"], block["label"], block["agrees"]) == ("A", None, None)
    assert summary.labelled == 0 and "agrees" not in summary.line()


def test_map_and_flat(judge: Judge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"task": "Q", "x": "meh", "y": "good", "pick": "B"}])
    batch(
        judge, source, tmp_path / "out.jsonl", maps={"question": "task", "a": "x", "b": "y", "label": "pick"}, flat=True
    )
    (row,) = read_rows(tmp_path / "out.jsonl")
    assert "rmjudge" not in row
    assert {k: row[k] for k in ("task", "x", "y", "pick")} == {"task": "Q", "x": "meh", "y": "good", "pick": "B"}
    assert (row["rmjudge_winner"], row["rmjudge_label"], row["rmjudge_agrees"], row["rmjudge_line"]) == (
        "B",
        "B",
        True,
        1,
    )
    assert row["rmjudge_ab_verdict"] == "B" and row["rmjudge_ba_verdict"] == "B"
    assert row["rmjudge_cached"] is False and row["rmjudge_model"] == "fake.gguf"


def test_multi_turn_prompt_is_judged_with_the_conversation_template(
    judge: Judge, fake: FakeEngine, tmp_path: Path
) -> None:
    prompt = "I need a recipe.\n\nAssistant: For what?\n\nHuman: Pancakes."
    batch(judge, write_lines(tmp_path / "in.jsonl", [pair_row(1, prompt=prompt)]), tmp_path / "out.jsonl")
    (row,) = read_rows(tmp_path / "out.jsonl")
    assert row["rmjudge"]["winner"] == "A"
    assert (
        "User: I need a recipe.\nChatbot A: For what?\nUser: Pancakes.\nChatbot A: a good answer"
        in fake.generate_calls[0]
    )


def test_stdout_output(judge: Judge, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2)])
    run_batch(str(source), None, lambda: judge, progress=False)
    lines = capfdbinary.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["p1", "p2"]


# -- broken lines -------------------------------------------------------------------------------


def test_every_kind_of_broken_line_becomes_an_error_record(judge: Judge, tmp_path: Path) -> None:
    inputs: list[Any] = [
        pair_row(1),
        b'{"id": "p2", "prompt": ',  # bad JSON
        b"[1, 2]",  # not an object
        b'{"id": "p4", "prompt": "caf\xe9", "chosen": "c", "rejected": "r"}',  # not UTF-8
        {"id": "p5", "prompt": "Q", "chosen": "c"},  # missing field
        pair_row(6, chosen=3),  # not a string
        pair_row(7, chosen="good " * 1000),  # longer than the fake model's 4000-token context
        pair_row(8),
    ]
    messages: list[str] = []
    summary = batch(judge, write_lines(tmp_path / "in.jsonl", inputs), tmp_path / "out.jsonl", warn=messages.append)
    rows = read_rows(tmp_path / "out.jsonl")
    assert len(rows) == 8
    errors = {row["rmjudge"]["line"]: row for row in rows if "error" in row["rmjudge"]}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7]
    assert {line: row["rmjudge"]["exit_code"] for line, row in errors.items()} == {2: 3, 3: 3, 4: 3, 5: 3, 6: 3, 7: 5}
    assert "not valid JSON" in errors[2]["rmjudge"]["error"]
    assert "not UTF-8" in errors[4]["rmjudge"]["error"]
    assert "missing field 'rejected'" in errors[5]["rmjudge"]["error"]
    assert "must be a string" in errors[6]["rmjudge"]["error"]
    assert "context" in errors[7]["rmjudge"]["error"]
    assert set(errors[2]) == {"rmjudge"}  # nothing could be parsed
    assert errors[5]["id"] == "p5" and errors[6]["chosen"] == 3  # what could be parsed is passed through
    assert errors[7]["chosen"] == "good " * 1000
    assert set(errors[5]["rmjudge"]) == {"error", "line", "exit_code"}
    assert (summary.judged, summary.failed, summary.exit_code) == (2, 6, ExitCode.NEGATIVE)
    assert messages[0].startswith("line 2: not valid JSON") and len(messages) == 6


def test_flat_error_record(judge: Judge, tmp_path: Path) -> None:
    batch(judge, write_lines(tmp_path / "in.jsonl", [b"nope"]), tmp_path / "out.jsonl", flat=True)
    (row,) = read_rows(tmp_path / "out.jsonl")
    assert set(row) == {"rmjudge_error", "rmjudge_line", "rmjudge_exit_code"} and row["rmjudge_exit_code"] == 3


@pytest.mark.parametrize(
    ("broken", "code"), [(b'{"id": 3', ExitCode.INPUT), (pair_row(3, chosen="good " * 1000), ExitCode.CONTEXT)]
)
def test_strict_stops_at_the_first_failed_line(judge: Judge, tmp_path: Path, broken: Any, code: int) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2), broken, pair_row(4)])
    with pytest.raises(LineFailed) as raised:
        batch(judge, source, tmp_path / "out.jsonl", strict=True)
    assert raised.value.exit_code == code and str(raised.value).startswith("line 3: ")
    assert [row["id"] for row in read_rows(tmp_path / "out.jsonl")] == ["p1", "p2"]


# -- resume and interruption ----------------------------------------------------------------------


def test_ctrl_c_keeps_the_judged_lines_and_resume_completes_them(
    fake: FakeEngine, judge: Judge, tmp_path: Path
) -> None:
    inputs = [
        pair_row(n, chosen="good" if n % 2 else "poor", rejected="poor" if n % 2 else "good") for n in range(1, 9)
    ]
    source = write_lines(tmp_path / "in.jsonl", inputs)

    def interrupting(prompt: str) -> str:
        if len(fake.generate_calls) == 7:  # the 4th pair's first order
            raise KeyboardInterrupt
        return _script(prompt)

    fake.script = interrupting
    first = batch(judge, source, tmp_path / "out.jsonl")
    assert first.interrupted and first.exit_code == ExitCode.INTERRUPTED
    assert [row["id"] for row in read_rows(tmp_path / "out.jsonl")] == ["p1", "p2", "p3"]

    fake.script = _script
    second = batch(judge, source, tmp_path / "out.jsonl", resume=True)
    assert (second.resumed, second.judged, second.exit_code) == (3, 5, ExitCode.OK)
    rows = read_rows(tmp_path / "out.jsonl")
    assert [row["id"] for row in rows] == [f"p{n}" for n in range(1, 9)]
    assert [row["rmjudge"]["winner"] for row in rows] == ["A", "B"] * 4

    # nothing left: a resumed complete file needs no model at all
    def no_model() -> Judge:
        raise AssertionError("the model must not load when every line is done")

    third = run_batch(str(source), str(tmp_path / "out.jsonl"), no_model, resume=True, progress=False)
    assert (third.resumed, third.judged) == (8, 0) and len(read_rows(tmp_path / "out.jsonl")) == 8


def test_resume_cuts_a_torn_last_line(judge: Judge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(n) for n in range(1, 6)])
    batch(judge, source, tmp_path / "full.jsonl")
    full = (tmp_path / "full.jsonl").read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(full[:2]) + full[2][: len(full[2]) // 2])  # died in the middle of line 3
    summary = batch(judge, source, out, resume=True)
    assert summary.torn_line_removed and (summary.resumed, summary.judged) == (2, 3)
    resumed = out.read_bytes().splitlines(keepends=True)
    assert resumed[:2] == full[:2]  # untouched
    assert [json.loads(line)["id"] for line in resumed] == ["p1", "p2", "p3", "p4", "p5"]


def test_resume_matches_by_id_and_refuses_another_input(judge: Judge, tmp_path: Path) -> None:
    rows = [pair_row(n) for n in range(1, 5)]
    out = tmp_path / "out.jsonl"
    batch(judge, write_lines(tmp_path / "in.jsonl", rows[:2]), out)
    # Blank lines shift the line numbers; ids still match.
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_bytes(
        b"\n\n" + (tmp_path / "in.jsonl").read_bytes() + b"".join(orjson.dumps(r) + b"\n" for r in rows[2:])
    )
    summary = batch(judge, shifted, out, resume=True)
    assert (summary.resumed, summary.judged) == (2, 2)
    assert [row["id"] for row in read_rows(out)] == ["p1", "p2", "p3", "p4"]

    reordered = write_lines(tmp_path / "reordered.jsonl", [rows[1], rows[0], *rows[2:]])
    with pytest.raises(UsageError) as raised:
        batch(judge, reordered, out, resume=True)
    assert 'id "p1"' in str(raised.value) and 'id "p2"' in str(raised.value)


def test_resume_without_ids_matches_by_line_number(judge: Judge, tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{n}", "chosen": "good", "rejected": "bad"} for n in range(3)]
    source = write_lines(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    write_lines(tmp_path / "two.jsonl", rows[:2])
    batch(judge, tmp_path / "two.jsonl", out)
    assert batch(judge, source, out, resume=True).resumed == 2
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_bytes(b"\n" + source.read_bytes())
    with pytest.raises(UsageError, match=r"line 1 .* the input has line 2"):
        batch(judge, shifted, out, resume=True)


def test_resume_counts_earlier_failures_in_the_exit_code(judge: Judge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [b"oops", pair_row(2)])
    out = tmp_path / "out.jsonl"
    write_lines(out, [{"rmjudge": {"error": "not valid JSON", "line": 1, "exit_code": 3}}])
    summary = batch(judge, source, out, resume=True)
    assert (summary.resumed, summary.resumed_failed, summary.failed, summary.exit_code) == (1, 1, 0, ExitCode.NEGATIVE)


def test_usage_errors(judge: Judge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1)])
    with pytest.raises(UsageError, match="--resume needs -o"):
        run_batch(str(source), None, lambda: judge, resume=True, progress=False)
    with pytest.raises(UsageError, match="is the input file"):
        batch(judge, source, source)
    existing = write_lines(tmp_path / "existing.jsonl", [{"x": 1}])
    with pytest.raises(UsageError, match="--resume, or replace it with --overwrite"):
        batch(judge, source, existing)
    with pytest.raises(UsageError, match="not rmjudge batch output"):
        batch(judge, source, existing, resume=True)
    assert batch(judge, source, existing, overwrite=True).judged == 1
    longer = write_lines(tmp_path / "longer.jsonl", [pair_row(1), pair_row(2)])
    batch(judge, longer, tmp_path / "two.jsonl")
    with pytest.raises(UsageError, match=r"more lines than .*in.jsonl \(line 2 has no input line left\)"):
        batch(judge, source, tmp_path / "two.jsonl", resume=True)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated  # what the command line's SIGTERM handler does


@pytest.mark.parametrize(
    ("signum", "handler", "stop"),
    [
        (signal.SIGINT, signal.default_int_handler, KeyboardInterrupt),  # Python's own, whatever was inherited
        (signal.SIGTERM, _raise_terminated, Terminated),
    ],
)
def test_a_signal_waits_for_the_line_being_written(
    signum: int, handler: Callable[[int, FrameType | None], None], stop: type[BaseException]
) -> None:
    previous = signal.signal(signum, handler)
    try:
        with Interrupts() as interrupts:
            written = []
            with pytest.raises(stop), interrupts.deferred():
                os.kill(os.getpid(), signum)
                time.sleep(0.05)  # the handler has run by now: it must not have raised
                written.append("line")
            assert written == ["line"]
            with pytest.raises(stop):
                os.kill(os.getpid(), signum)
                time.sleep(1)
        assert signal.getsignal(signum) is handler
    finally:
        signal.signal(signum, previous)


def default_signals() -> None:
    """For a child process (``preexec_fn``): SIGINT and SIGTERM as a terminal would deliver them,
    not as this process may have inherited them (ignored, under ``nohup make test &``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# -- the verdict cache ----------------------------------------------------------------------------


def test_second_run_is_served_from_the_cache(judge: Judge, fake: FakeEngine, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2)])
    batch(judge, source, tmp_path / "one.jsonl")
    calls = len(fake.generate_calls)
    summary = batch(judge, source, tmp_path / "two.jsonl")
    assert len(fake.generate_calls) == calls and summary.cached == 2
    assert all(o["cached"] for row in read_rows(tmp_path / "two.jsonl") for o in row["rmjudge"]["orders"])


def _put_keys(path: str, worker: int, count: int, barrier: Any) -> None:
    barrier.wait()  # every process starts writing at the same moment
    cache = VerdictCache(Path(path))
    for index in range(count):
        cache.put(f"{worker}/{index}", {"worker": worker, "index": index})
    cache.close()


def test_several_processes_write_the_cache_at_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    path = tmp_path / "shared" / "verdicts.sqlite3"
    workers = [context.Process(target=_put_keys, args=(str(path), w, 200, barrier)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    cache = VerdictCache(path)
    assert cache.stats().entries == 800
    assert all(cache.get(f"{w}/{i}") == {"worker": w, "index": i} for w in range(4) for i in range(200))


def test_cache_stats_and_clear_commands() -> None:
    cache = VerdictCache()
    for index in range(3):
        cache.put(f"k{index}", {"index": index})
    stats = invoke_cli("cache", "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["entries"] == 3 and data["path"] == str(default_cache_path()) and data["bytes"] > 0
    cleared = invoke_cli("cache", "clear", "--json")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["removed"] == 3
    assert VerdictCache().stats().entries == 0
    assert json.loads(invoke_cli("cache", "stats", "--json").stdout)["entries"] == 0


# -- the command line, without a model -----------------------------------------------------------


def test_cli_failed_lines_exit_1_without_loading_a_model(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [b"{oops", b"[]"])
    result = invoke_cli("batch", str(source), "--model", str(tmp_path / "no-such-model.gguf"))
    assert result.returncode == ExitCode.NEGATIVE, result.stderr
    assert [json.loads(line)["rmjudge"]["line"] for line in result.stdout.splitlines()] == [1, 2]
    # stderr is no terminal: no progress bar; each failed line is named, then the summary
    first, second, summary = result.stderr.splitlines()
    assert first.startswith("rmjudge: line 1: not valid JSON: ") and first.endswith(" at column 2")
    assert second == "rmjudge: line 2: a line must be a JSON object, not a list"
    assert summary.startswith("rmjudge: 0 pairs, 2 failed, 0 ties, 0 forced, ")
    quiet = invoke_cli("batch", str(source), "--quiet", "--model", "x.gguf")
    assert quiet.returncode == 1 and quiet.stderr == ""


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["--resume"], None, ExitCode.USAGE, "--resume needs -o"),
        (["--map", "nonsense"], None, ExitCode.USAGE, "ROLE=FIELD"),
        (["--strict"], b"{oops\n", ExitCode.INPUT, "line 1: not valid JSON"),
        ([], b'{"foo": 1}\n', ExitCode.INPUT, "fits no known pair schema"),
        (["missing.jsonl"], None, ExitCode.INPUT, "no such file"),
    ],
)
def test_cli_errors_are_one_line_with_their_exit_code(
    args: list[str], stdin: bytes | None, code: int, message: str
) -> None:
    result = invoke_cli("batch", *args, stdin=stdin or b"")
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- real model ---------------------------------------------------------------------------------

LLMBAR = SHARED / "data" / "llmbar.jsonl"
# Short: the reasoning template has no system prompt; a budget of 8 tokens per order (real generation).
GEMMA_OPTIONS = ["--template", "reasoning", "--max-tokens", "8"]


def _shortest_lines(path: Path, count: int) -> list[str]:
    """``count`` lines of ``path``, the shortest (fast to judge), in the file's order."""
    lines = path.read_text().splitlines()
    keep = sorted(sorted(range(len(lines)), key=lambda i: len(lines[i]))[:count])
    return [lines[i] for i in keep]


def signal_after_lines(
    command: list[str], out: Path, lines: int, signum: int, tmp_path: Path
) -> tuple[int, str]:
    """Run ``rmjudge *command``, send ``signum`` once ``out`` has ``lines`` lines; its exit code and stderr."""
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "rmjudge", *command],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT, preexec_fn=default_signals,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while not (out.exists() and out.read_bytes().count(b"\n") >= lines):
                assert process.poll() is None, stderr_path.read_text()
                assert time.monotonic() < deadline, f"no {lines} lines within 10 minutes"
                time.sleep(0.05)
            process.send_signal(signum)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return code, stderr_path.read_text()


def _complete_rows(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the output ends in a torn line"
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.model
@pytest.mark.skipif(not LLMBAR.exists(), reason="../shared/data missing")
def test_real_batch_interrupted_resumed_and_cached(gemma_path: Path, tmp_path: Path) -> None:
    lines = _shortest_lines(LLMBAR, 50)
    inputs = [json.loads(line) for line in lines]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    options = ["--model", str(gemma_path), *GEMMA_OPTIONS]

    command = ["batch", str(source), "-o", str(out), *options]
    code, message = signal_after_lines(command, out, 20, signal.SIGINT, tmp_path)
    assert code == ExitCode.INTERRUPTED, message
    assert "interrupted" in message and "--resume" in message and "Traceback" not in message
    partial = _complete_rows(out)
    assert 20 <= len(partial) < 50
    assert [row["id"] for row in partial] == [row["id"] for row in inputs[: len(partial)]]
    kept = out.read_bytes()

    resumed = run_cli("batch", str(source), "-o", str(out), "--resume", *options, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after {len(partial)} lines" in resumed.stderr
    assert out.read_bytes().startswith(kept)  # the lines done before are untouched
    rows = _complete_rows(out)
    assert len(rows) == 50
    assert [row["id"] for row in rows] == [row["id"] for row in inputs]
    for row, given in zip(rows, inputs, strict=True):
        assert {k: v for k, v in row.items() if k != "rmjudge"} == given
        block = row["rmjudge"]
        assert block["winner"] in ("A", "B", "tie") and block["label"] == "A"
        assert block["agrees"] == (block["winner"] == "A")
        assert block["model"]["file"] == gemma_path.name
        assert [o["order"] for o in block["orders"]] == ["ab", "ba"]
        assert all(o["stopped_by"] != "none" for o in block["orders"])  # generated, not verdict-only

    again = tmp_path / "again.jsonl"
    cached = run_cli("batch", str(source), "-o", str(again), *options, cwd=ROOT)
    assert cached.returncode == 0, cached.stderr
    assert "50 pairs (50 from the cache)" in cached.stderr
    rows_again = _complete_rows(again)
    assert all(order["cached"] for row in rows_again for order in row["rmjudge"]["orders"])
    assert [r["rmjudge"]["probability_a"] for r in rows_again] == [r["rmjudge"]["probability_a"] for r in rows]


@pytest.mark.model
@pytest.mark.skipif(not LLMBAR.exists(), reason="../shared/data missing")
def test_real_batch_under_head_ends_quietly(gemma_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(_shortest_lines(LLMBAR, 4)) + "\n")
    command = f"{sys.executable} -m rmjudge batch {source} --model {gemma_path} --max-tokens 0 --order ab | head -n 1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and "rmjudge" in json.loads(result.stdout)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


@pytest.mark.model
@pytest.mark.skipif(not (SHARED / "data" / "hhh_alignment.jsonl").exists(), reason="../shared/data missing")
def test_real_batch_renders_multi_turn_prompts_as_conversations(gemma_path: Path, tmp_path: Path) -> None:
    from rmjudge.records import read_records

    rows = [json.loads(line) for line in (SHARED / "data" / "hhh_alignment.jsonl").read_text().splitlines()]
    multi = [row for row in rows if "\n\nAssistant:" in row["prompt"]][:2]
    source = write_lines(tmp_path / "in.jsonl", multi)
    result = run_cli("batch", str(source), "--model", str(gemma_path), "--max-tokens", "0", "--order", "ab", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    judged = [json.loads(line)["rmjudge"] for line in result.stdout.splitlines()]
    judge = Judge(gemma_path, max_tokens=0, order="ab")
    for record, block in zip(read_records(str(source)), judged, strict=True):
        assert record.pair is not None and record.pair.is_multi_turn
        messages = judge.prompt_messages(record.pair)
        assert "[The Start of the Conversation between Chatbot A and the Client]" in messages[-1]["content"]
        assert block["orders"][0]["tokens_in"] == len(judge.engine.format_prompt(messages).tokens)
