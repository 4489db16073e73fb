"""SIGTERM (what job schedulers, containers and ``kill`` send) stops ``batch`` and ``eval`` as gracefully
as Ctrl-C: the line in flight is finished or dropped, every written line is kept, and the exit is 143.

The command line turns SIGTERM into ``rmjudge.errors.Terminated`` (a KeyboardInterrupt); batch and eval
treat it as they treat Ctrl-C, and batch defers it while a line is being written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rmjudge.cache import VerdictCache
from rmjudge.errors import ExitCode, Terminated
from rmjudge.evaluate import load_pairs, run_eval
from rmjudge.judge import Judge
from rmjudge.output import Interrupts
from tests.conftest import ROOT, FakeEngine
from tests.fakeserver import FakeServer
from tests.test_batch import (
    LLMBAR,
    _complete_rows,
    _raise_terminated,
    _shortest_lines,
    default_signals,
    pair_row,
    signal_after_lines,
    write_lines,
)


@pytest.fixture
def sigterm_raises() -> Iterator[None]:
    """SIGTERM handled as the command line handles it: by raising Terminated."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_terminated_is_a_keyboard_interrupt_with_exit_143() -> None:
    assert issubclass(Terminated, KeyboardInterrupt)
    assert Terminated.exit_code == ExitCode.TERMINATED == 143


def test_a_default_sigterm_is_left_alone() -> None:
    """A library caller that never asked for SIGTERM to be caught keeps the default: it ends the process."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with Interrupts():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate_on_call(judge: Judge, call: int) -> None:
    """``judge``'s (fake) engine sends SIGTERM to this process when it goes on to the ``call``-th pair
    (every pair before it judged, in both orders, one sequence at a time)."""
    engine = judge.engine
    assert isinstance(engine, FakeEngine) and engine.parallel == 1

    def terminate(fake: FakeEngine) -> None:
        if fake.finished == 2 * (call - 1):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises before this ends

    engine.raise_when = terminate


def test_sigterm_stops_batch_with_every_written_line_kept(
    sigterm_raises: None, fake_engine_factory: Callable[..., FakeEngine], tmp_path: Path
) -> None:
    from rmjudge.batch import run_batch

    judge = Judge(engine=fake_engine_factory(), cache=VerdictCache(tmp_path / "verdicts.sqlite3"))
    _terminate_on_call(judge, 3)
    source = write_lines(tmp_path / "in.jsonl", [pair_row(n) for n in range(1, 6)])
    out = tmp_path / "out.jsonl"
    summary = run_batch(str(source), str(out), lambda: judge, progress=False)
    assert (summary.interrupted, summary.terminated, summary.exit_code) == (True, True, 143)
    assert [row["id"] for row in _complete_rows(out)] == ["p1", "p2"]


def test_sigterm_stops_eval_with_every_written_result_kept(
    sigterm_raises: None, fake_engine_factory: Callable[..., FakeEngine], tmp_path: Path
) -> None:
    judge = Judge(engine=fake_engine_factory(), cache=VerdictCache(tmp_path / "verdicts.sqlite3"))
    _terminate_on_call(judge, 3)
    items = load_pairs(str(write_lines(tmp_path / "in.jsonl", [pair_row(n) for n in range(1, 6)])))
    out = tmp_path / "results.jsonl"
    with pytest.raises(Terminated):
        run_eval(judge, items, protocol="both", seed=0, run={"data": "in.jsonl"}, out=out)
    kinds = [(row["kind"], row.get("id")) for row in _complete_rows(out)]
    assert kinds == [("run", None), ("pair", "p1"), ("pair", "p2")]


# -- the command line, reading a pipe that stays open ---------------------------------------------


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, ExitCode.TERMINATED), (signal.SIGINT, ExitCode.INTERRUPTED)]
)
def test_a_pipe_fed_a_line_at_a_time_is_judged_as_it_comes_and_a_signal_still_stops_it_cleanly(
    signum: int, exit_code: int, tmp_path: Path
) -> None:
    """``tail -f log | rmjudge batch -``: each line is written before the next is fed; a signal while the
    input thread waits on the open pipe exits with the signal's code, every line kept (Python aborts,
    exit 134, if that thread is left holding sys.stdin's lock)."""
    server = FakeServer()  # an OpenAI-compatible server on 127.0.0.1, no model to load
    out = tmp_path / "out.jsonl"
    command = ["batch", "-", "-o", str(out), "--endpoint", server.url, "--template", "instruct", "--max-tokens", "64"]
    process = subprocess.Popen(
        [sys.executable, "-m", "rmjudge", *command],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
        preexec_fn=default_signals,
    )  # fmt: skip
    assert process.stdin is not None and process.stderr is not None
    try:
        for line in (1, 2):
            process.stdin.write(json.dumps(pair_row(line)).encode() + b"\n")
            process.stdin.flush()
            deadline = time.monotonic() + 120
            while not (out.exists() and out.read_bytes().count(b"\n") == line):
                assert process.poll() is None and time.monotonic() < deadline, f"line {line} was not written"
                time.sleep(0.05)
        process.send_signal(signum)  # the pipe is still open: the reading thread waits on it
        code = process.wait(timeout=60)
        stderr = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stderr.close()
        server.stop()
    assert code == exit_code, stderr
    assert "interrupted" in stderr and "Fatal Python error" not in stderr and "Traceback" not in stderr
    assert [row["id"] for row in _complete_rows(out)] == ["p1", "p2"]


# -- the command line, with a real model ---------------------------------------------------------


@pytest.mark.model
@pytest.mark.skipif(not LLMBAR.exists(), reason="../shared/data missing")
def test_real_batch_stopped_by_sigterm_exits_143_and_resumes_without_a_lost_or_doubled_line(
    gemma_path: Path, tmp_path: Path
) -> None:
    lines = _shortest_lines(LLMBAR, 12)
    inputs = [json.loads(line) for line in lines]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    options = ["--model", str(gemma_path), "--template", "reasoning", "--max-tokens", "8"]
    command = ["batch", str(source), "-o", str(out), *options]
    code, message = signal_after_lines(command, out, 3, signal.SIGTERM, tmp_path)
    assert code == ExitCode.TERMINATED, message
    assert "interrupted" in message and "Traceback" not in message
    partial = _complete_rows(out)  # every line whole
    assert 3 <= len(partial) < 12
    assert [row["id"] for row in partial] == [row["id"] for row in inputs[: len(partial)]]
    resumed = subprocess.run(
        [sys.executable, "-m", "rmjudge", "batch", str(source), "-o", str(out), "--resume", *options],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [row["id"] for row in _complete_rows(out)] == [row["id"] for row in inputs]


@pytest.mark.model
@pytest.mark.skipif(not LLMBAR.exists(), reason="../shared/data missing")
def test_real_eval_stopped_by_sigterm_exits_143_with_its_results_kept(gemma_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(_shortest_lines(LLMBAR, 12)) + "\n")
    out = tmp_path / "results.jsonl"
    command = ["eval", str(source), "--out", str(out), "--model", str(gemma_path), "--template", "reasoning",
               "--max-tokens", "8", "--json"]  # fmt: skip
    code, message = signal_after_lines(command, out, 4, signal.SIGTERM, tmp_path)  # the run line and 3 pairs
    assert code == ExitCode.TERMINATED, message
    assert "Traceback" not in message
    rows = _complete_rows(out)
    assert rows[0]["kind"] == "run" and all(row["kind"] == "pair" for row in rows[1:]) and len(rows) < 13
