"""``batch --resume`` and ``-o``: nothing in an output file changes until it is proven to be rmjudge's
output of this input, judged as this run judges; the input is never written; write errors name the output.

Each reproduction of issue 9 is a real file on disk, checked byte for byte after the refusal.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmjudge.batch import BatchSummary, error_block, output_row, run_batch
from rmjudge.cache import VerdictCache
from rmjudge.engines import Sampling
from rmjudge.errors import ExitCode, InputError, OutputError, UsageError
from rmjudge.judge import Judge
from rmjudge.records import Record
from rmjudge.resume import line_start
from tests.conftest import ROOT, FakeEngine, run_cli
from tests.test_batch import _probability_a, _script, pair_row, read_rows, write_lines

MakeJudge = Callable[..., Judge]


@pytest.fixture
def make_judge(tmp_path: Path) -> MakeJudge:
    """Judges sharing one cache; ``model`` names the (fake) model file, ``weights`` its content."""
    cache = VerdictCache(tmp_path / "verdicts.sqlite3")

    def make(model: str = "fake.gguf", weights: bytes | None = None, **options: Any) -> Judge:
        engine = FakeEngine(tmp_path / model, script=_script, probability_a=_probability_a, context=4000)
        if weights is not None:
            (tmp_path / model).write_bytes(weights)
        return Judge(engine=engine, cache=cache, **options)

    return make


def batch(judge: Judge | Callable[[], Judge], source: Path, output: Path, **options: Any) -> BatchSummary:
    factory = judge if callable(judge) and not isinstance(judge, Judge) else (lambda: judge)
    return run_batch(str(source), str(output), factory, progress=False, **options)  # type: ignore[arg-type]


def no_model() -> Judge:
    raise AssertionError("the model must not load: the file is refused on its input alone")


def refused(output: Path, run: Callable[[], object], match: str) -> None:
    """``run`` raises a UsageError matching ``match`` and leaves ``output`` byte for byte as it was."""
    before = output.read_bytes()
    with pytest.raises(UsageError, match=match) as raised:
        run()
    assert "\n" not in str(raised.value)
    assert output.read_bytes() == before


# -- files that are not rmjudge output are never touched ----------------------------------------


def test_resume_over_a_text_file_leaves_it_untouched(make_judge: MakeJudge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1)])
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nline two without a newline")  # 0.1 cut this "torn" line first
    not_ours = r"notes.txt is not rmjudge batch output \(nothing was changed\)"
    refused(notes, lambda: batch(no_model, source, notes, resume=True), not_ours)
    notes.write_text('{"id": "p1"}\nmy notes')  # JSON, but not rmjudge's
    refused(notes, lambda: batch(no_model, source, notes, resume=True), r"line 1 of .*notes.txt is not rmjudge")


def test_resume_over_one_json_line_without_a_newline_is_refused(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1)])
    other = tmp_path / "other.jsonl"
    other.write_bytes(b'{"a": 1}')  # 0.1 emptied it and wrote batch output, exit 0
    refused(other, lambda: batch(no_model, source, other, resume=True), r"last line of .* is incomplete")


def test_resume_over_a_binary_file_reads_no_further_than_its_first_byte(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1)])
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    refused(model, lambda: batch(no_model, source, model, resume=True), r"model.gguf is not rmjudge batch output")


def test_a_torn_line_is_removed_only_when_it_starts_like_the_next_line(make_judge: MakeJudge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2)])
    full = tmp_path / "full.jsonl"
    batch(make_judge(), source, full)
    first, second = full.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    # A complete line 1, then line 2 cut short: proven, cut, judged again.
    out.write_bytes(first + second[:40])
    summary = batch(make_judge(), source, out, resume=True)
    assert summary.torn_line_removed and (summary.resumed, summary.judged) == (1, 1)
    assert out.read_bytes().startswith(first) and [row["id"] for row in read_rows(out)] == ["p1", "p2"]
    # Only a torn line, for line 1: the same.
    out.write_bytes(first[:25])
    assert batch(make_judge(), source, out, resume=True).torn_line_removed
    assert [row["id"] for row in read_rows(out)] == ["p1", "p2"]
    # A tail that is not the start of line 2's output (another id) is refused.
    out.write_bytes(first + second[:40].replace(b'"p2"', b'"p9"'))
    refused(out, lambda: batch(no_model, source, out, resume=True), r"not the output for line 2 of")
    # A tail with no input line left for it too.
    out.write_bytes(first + second + b'{"id":"p3"')
    refused(out, lambda: batch(no_model, source, out, resume=True), r"incomplete and no line left for it")


# -- lines must be the output of this input -----------------------------------------------------


def test_resume_over_the_output_of_another_input_without_ids_is_refused(make_judge: MakeJudge, tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{n}", "chosen": "good", "rejected": "bad"} for n in range(3)]
    first = write_lines(tmp_path / "first.jsonl", rows)
    out = tmp_path / "out.jsonl"
    batch(make_judge(), write_lines(tmp_path / "two.jsonl", rows[:2]), out)
    other = write_lines(tmp_path / "other.jsonl", [{**row, "prompt": f"Other {n}"} for n, row in enumerate(rows)])
    refused(
        out,
        lambda: batch(no_model, other, out, resume=True),
        r"line 1 of .*out.jsonl holds other input than line 1 of .*other.jsonl: 'prompt' differs \(nothing was",
    )
    assert batch(make_judge(), first, out, resume=True).resumed == 2  # the right input still resumes


def test_resume_with_an_edited_text_is_refused_even_with_ids(make_judge: MakeJudge, tmp_path: Path) -> None:
    rows = [pair_row(n) for n in range(1, 4)]
    out = tmp_path / "out.jsonl"
    batch(make_judge(), write_lines(tmp_path / "in.jsonl", rows[:2]), out)
    rows[1] = {**rows[1], "rejected": "an edited poor answer"}
    edited = write_lines(tmp_path / "edited.jsonl", rows)
    refused(out, lambda: batch(no_model, edited, out, resume=True), r"line 2 of .*: 'rejected' differs")
    rows[1] = {**pair_row(2), "note": "a field added"}
    added = write_lines(tmp_path / "added.jsonl", rows)
    refused(out, lambda: batch(no_model, added, out, resume=True), r"'note' differs")


def test_resume_compares_values_exactly(make_judge: MakeJudge, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    batch(make_judge(), write_lines(tmp_path / "in.jsonl", [pair_row(1, score=1)]), out)
    # true == 1 in Python, but not in the file: another input
    changed = write_lines(tmp_path / "changed.jsonl", [pair_row(1, score=True), pair_row(2)])
    refused(out, lambda: batch(no_model, changed, out, resume=True), r"'score' differs")


def test_resume_of_error_lines_matches_them_too(make_judge: MakeJudge, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lacking = {"id": "p3", "prompt": "Q", "chosen": "c"}  # no rejected: an error line
    batch(make_judge(), write_lines(tmp_path / "in.jsonl", [b"{broken", pair_row(2), lacking]), out)
    fixed = write_lines(tmp_path / "fixed.jsonl", [b"{broken", pair_row(2), {**lacking, "rejected": "r"}])
    refused(out, lambda: batch(no_model, fixed, out, resume=True), r"line 3 of .*: 'rejected' differs")


def test_resume_with_and_without_flat_is_refused(make_judge: MakeJudge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2)])
    out = tmp_path / "out.jsonl"
    batch(make_judge(), write_lines(tmp_path / "one.jsonl", [pair_row(1)]), out)
    refused(out, lambda: batch(no_model, source, out, resume=True, flat=True), r"written without --flat")


# -- lines must be judged as this run judges ----------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "name", "flat_name", "was", "now"),
    [
        ({"max_tokens": 64}, "sampling.max_tokens", "rmjudge_max_tokens", "2048", "64"),
        ({"model": "other.gguf"}, "model.file", "rmjudge_model", '"fake.gguf"', '"other.gguf"'),
        # Other weights: the model's id ("sha256:" and its hash) differs; --flat lines record the hash.
        (
            {"weights": b"other weights"},
            "model.id",
            "rmjudge_model_sha256",
            '"(sha256:)?[0-9a-f]{64}"',
            '"(sha256:)?[0-9a-f]{64}"',
        ),
        ({"template": "reasoning"}, "template.id", "rmjudge_template", '"rm-r1-instruct"', '"rm-r1-reasoning"'),
        ({"order": "ab"}, "orders", "orders", r'\["ab","ba"\]', r'\["ab"\]'),
        ({"sampling": Sampling(seed=7)}, "sampling.seed", "rmjudge_seed", "0", "7"),
        ({"sampling": Sampling(temperature=0.5)}, "sampling.temperature", "rmjudge_temperature", "0.0", "0.5"),
    ],
)
@pytest.mark.parametrize("flat", [False, True])
def test_resume_with_other_judging_settings_is_refused_before_anything_changes(
    make_judge: MakeJudge, tmp_path: Path, changed: dict[str, Any], name: str, flat_name: str, was: str, now: str,
    flat: bool,
) -> None:  # fmt: skip
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2), pair_row(3)])
    out = tmp_path / "out.jsonl"
    batch(make_judge(), write_lines(tmp_path / "two.jsonl", [pair_row(1), pair_row(2)]), out, flat=flat)
    with out.open("ab") as handle:
        handle.write(b'{"id":"p3","pro')  # a torn line: it stays until the settings are proven
    other = make_judge(**changed)
    match = rf"--resume: line 1 of .*out.jsonl was judged with {flat_name if flat else name} {was}, this run with {now}"
    refused(out, lambda: batch(other, source, out, resume=True, flat=flat), match)
    # With the same settings it resumes: the torn line removed, line 3 appended.
    summary = batch(make_judge(), source, out, resume=True, flat=flat)
    assert (summary.resumed, summary.judged, summary.torn_line_removed) == (2, 1, True)
    assert [row["id"] for row in read_rows(out)] == ["p1", "p2", "p3"]


def test_flat_lines_record_the_sampling_and_budget(make_judge: MakeJudge, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    batch(make_judge(max_tokens=16), write_lines(tmp_path / "in.jsonl", [pair_row(1)]), out, flat=True)
    (row,) = read_rows(out)
    assert {k: row[k] for k in ("rmjudge_max_tokens", "rmjudge_temperature", "rmjudge_top_p", "rmjudge_seed")} == {
        "rmjudge_max_tokens": 16,
        "rmjudge_temperature": 0.0,
        "rmjudge_top_p": 1.0,
        "rmjudge_seed": 0,
    }


def test_a_complete_file_needs_no_model_and_is_not_changed(make_judge: MakeJudge, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2)])
    out = tmp_path / "out.jsonl"
    batch(make_judge(), source, out)
    before = out.read_bytes()
    summary = batch(no_model, source, out, resume=True)
    assert (summary.resumed, summary.judged, out.read_bytes()) == (2, 0, before)


# -- the output is never the input --------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"overwrite": True}, {"resume": True}])
def test_a_hard_link_to_the_input_is_refused(tmp_path: Path, options: dict[str, bool]) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2)])
    link = tmp_path / "link.jsonl"
    os.link(source, link)
    refused(source, lambda: batch(no_model, source, link, **options), r"-o .*link.jsonl is the input file")
    symlink = tmp_path / "symlink.jsonl"
    symlink.symlink_to(source)
    refused(source, lambda: batch(no_model, source, symlink, **options), r"is the input file")


def test_cli_hard_link_with_overwrite_keeps_the_input(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1), pair_row(2)])
    before = source.read_bytes()
    os.link(source, tmp_path / "link.jsonl")
    result = run_cli("batch", str(source), "-o", str(tmp_path / "link.jsonl"), "--overwrite", "--model", "x.gguf")
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "is the input file" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert source.read_bytes() == before


def test_standard_input_that_is_the_output_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    with out.open("rb") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "rmjudge", "batch", "-", "-o", str(out), "--overwrite"],
            stdin=handle, capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
    assert result.returncode == ExitCode.USAGE and "is the input file" in result.stderr


def test_output_directory_says_so(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [pair_row(1)])
    with pytest.raises(UsageError, match=r"is a directory: give a file to write") as raised:
        batch(no_model, source, tmp_path)
    assert "--overwrite" not in str(raised.value)


# -- write errors -------------------------------------------------------------------------------


def _broken_lines(count: int) -> list[bytes]:
    """Input lines that fail without a model: their output lines are written at once."""
    return [b'{"id": %d, "oops"' % n for n in range(count)]


def test_cli_output_to_a_full_disk_is_a_one_line_write_error(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", _broken_lines(3))
    result = run_cli("batch", str(source), "-o", "/dev/full", "--model", "x.gguf")
    assert result.returncode == ExitCode.OUTPUT, result.stderr
    assert result.stderr.strip() == "rmjudge: cannot write /dev/full: No space left on device (nothing was written)"


def test_cli_standard_output_to_a_full_disk_is_a_one_line_write_error(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", _broken_lines(3))
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "rmjudge", "batch", str(source), "--model", "x.gguf"],
            stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
    assert result.returncode == ExitCode.OUTPUT, result.stderr
    assert result.stderr.strip().splitlines() == [
        "rmjudge: cannot write standard output: No space left on device (nothing was written)"
    ]


def _limit_file_size(limit: int) -> Callable[[], None]:
    def limit_it() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_it


def test_a_write_cut_short_keeps_every_whole_line_and_resume_completes(tmp_path: Path) -> None:
    """The file size limit stands in for a full disk: the write of line 4 stops half-way."""
    source = write_lines(tmp_path / "in.jsonl", _broken_lines(10))
    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "rmjudge", "batch", str(source), "-o", str(out), "--quiet", "--model", "x.gguf"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, preexec_fn=_limit_file_size(400),
    )  # fmt: skip
    assert result.returncode == ExitCode.OUTPUT, result.stderr
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith(f"rmjudge: cannot write {out}: File too large (the ")
    kept = out.read_bytes()
    lines = kept.count(b"\n")
    assert kept.endswith(b"\n") and 0 < lines < 10 and len(kept) <= 400
    assert f"the {lines} lines before it are kept" in message
    resumed = run_cli("batch", str(source), "-o", str(out), "--resume", "--quiet", "--model", "x.gguf")
    assert resumed.returncode == ExitCode.NEGATIVE, resumed.stderr  # every line failed (broken input)
    assert out.read_bytes().startswith(kept)
    assert [json.loads(line)["rmjudge"]["line"] for line in out.read_bytes().splitlines()] == list(range(1, 11))


def test_write_error_in_process_is_an_output_error(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", _broken_lines(2))
    with pytest.raises(OutputError, match=r"^cannot write /dev/full: No space left on device") as raised:
        run_batch(str(source), "/dev/full", no_model, progress=False)
    assert raised.value.exit_code == ExitCode.OUTPUT == 6


# -- properties ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)  # fmt: skip


@given(
    data=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    flat=st.booleans(),
)
def test_every_output_line_starts_with_the_bytes_a_torn_line_is_checked_against(
    data: dict[str, Any], flat: bool
) -> None:
    record = Record(line=1, data=data, error=InputError("missing field 'chosen'"))
    line = orjson.dumps(output_row(record, error_block(record, InputError("x")), flat=flat))
    start = line_start(record, flat)
    assert line.startswith(start)


# -- real model ---------------------------------------------------------------------------------


@pytest.mark.model
def test_real_resume_with_another_budget_is_refused(gemma_path: Path, tmp_path: Path) -> None:
    rows = [{"id": n, "prompt": "What is 2+2?", "chosen": "4", "rejected": f"{n}"} for n in range(3)]
    out = tmp_path / "out.jsonl"
    options = ["--model", str(gemma_path), "--template", "reasoning", "--order", "ab"]
    first = run_cli("batch", str(write_lines(tmp_path / "two.jsonl", rows[:2])), "-o", str(out), *options,
                    "--max-tokens", "0", cwd=ROOT)  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    source = write_lines(tmp_path / "in.jsonl", rows)
    other = run_cli("batch", str(source), "-o", str(out), "--resume", *options, "--max-tokens", "4", cwd=ROOT)
    assert other.returncode == ExitCode.USAGE, other.stderr
    assert "line 1 of" in other.stderr and "sampling.max_tokens 0, this run with 4" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1 and out.read_bytes() == before
    same = run_cli("batch", str(source), "-o", str(out), "--resume", *options, "--max-tokens", "0", cwd=ROOT)
    assert same.returncode == 0, same.stderr
    assert out.read_bytes().startswith(before) and [row["id"] for row in read_rows(out)] == [0, 1, 2]
