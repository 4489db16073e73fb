"""What the model sees of a file: UTF-8, no byte order mark, LF line endings; and one-line errors
naming the file for what cannot be read (a non-UTF-8 configuration file included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmjudge.compare import read_pair
from rmjudge.config import load_config
from rmjudge.errors import ExitCode, UsageError
from rmjudge.prompts import Pair
from rmjudge.records import count_records, read_records
from rmjudge.textio import normalise_text
from tests.conftest import ROOT, run_cli

BOM = "\ufeff".encode()


@pytest.mark.parametrize(
    ("text", "seen"),
    [
        ("line one\r\nline two\r\n", "line one\nline two\n"),  # Windows
        ("line one\rline two\r", "line one\nline two\n"),  # classic Mac
        ("\ufeffline one\nline two", "line one\nline two"),  # a BOM goes, the rest stays
        ("mixed\r\n\r\nends\n\r", "mixed\n\nends\n\n"),
        ("a \ufeff inside stays, \u2028 too", "a \ufeff inside stays, \u2028 too"),
    ],
)
def test_normalised_text(text: str, seen: str) -> None:
    assert normalise_text(text) == seen


def test_compare_files_and_question_file_are_normalised(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(BOM + b"First line.\r\nSecond line.\r\n")
    (tmp_path / "b.txt").write_bytes(b"Only\rclassic Mac\r")
    (tmp_path / "q.txt").write_bytes(BOM + b"Which is better?\r\n")
    pair = read_pair(str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), str(tmp_path / "q.txt"))
    assert pair == Pair(a="First line.\nSecond line.\n", b="Only\nclassic Mac\n", question="Which is better?\n")


def test_cli_show_prompt_has_no_bom_and_no_carriage_return(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(BOM + b"Alpha\r\nbeta")
    (tmp_path / "b.txt").write_bytes(b"Gamma\r\ndelta")
    result = run_cli(
        "compare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--show-prompt", "--template", "reasoning",
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (user,) = json.loads(result.stdout)["orders"]["ab"]
    assert "Alpha\nbeta" in user["content"] and "Gamma\ndelta" in user["content"]
    assert "\r" not in user["content"] and "\ufeff" not in user["content"]


def test_a_bom_does_not_cost_line_1_of_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [b'{"prompt": "Q", "chosen": "a", "rejected": "b"}', b'{"prompt": "R", "chosen": "c", "rejected": "d"}']
    path.write_bytes(BOM + b"\r\n".join(lines) + b"\r\n")
    first, second = read_records(str(path))
    assert first.error is None and first.pair == Pair(a="a", b="b", question="Q") and first.line == 1
    assert second.error is None and second.line == 2
    assert count_records(str(path)) == 2
    only_bom = tmp_path / "bom.jsonl"
    only_bom.write_bytes(BOM + b"\n" + b'{"prompt": "Q", "chosen": "a", "rejected": "b"}\n')
    assert [record.line for record in read_records(str(only_bom))] == [2] and count_records(str(only_bom)) == 1


def test_cli_batch_reads_line_1_after_a_bom_and_names_each_bad_line_once(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [b'{"prompt": "Q", "chosen": "a", "rejected": 1}', b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}']
    path.write_bytes(BOM + b"\n".join(lines) + b"\n")
    result = run_cli("batch", str(path), "--model", "x.gguf")  # both lines fail: no model is loaded
    assert result.returncode == ExitCode.NEGATIVE, result.stderr
    first, second, _summary = result.stderr.splitlines()
    assert first == "rmjudge: line 1: field 'rejected' must be a string, not a number"
    assert second == (
        "rmjudge: line 2: not UTF-8 text (byte 0xe9 at offset 15): convert it first, e.g. iconv -f latin1 -t utf-8"
    )


# -- configuration files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".rmjudge.toml", "pyproject.toml"])
def test_a_non_utf8_config_file_is_a_usage_error_naming_it(tmp_path: Path, name: str) -> None:
    (tmp_path / ".git").mkdir()
    config = tmp_path / name
    table = b"[tool.rmjudge]\n" if name == "pyproject.toml" else b""
    config.write_bytes(table + b'question = "caf\xe9"\n')
    with pytest.raises(UsageError) as raised:
        load_config(start=tmp_path)
    assert str(raised.value) == (
        f"{config} is not UTF-8 text (byte 0xe9 at offset {config.read_bytes().index(0xE9)}): convert it first, "
        "e.g. iconv -f latin1 -t utf-8"
    )


def test_cli_check_with_a_non_utf8_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_bytes(b'[tool.rmjudge]\nquestion = "caf\xe9"\n')
    (tmp_path / "doc.md").write_text("text\n")
    doc = str(tmp_path / "doc.md")
    result = run_cli("check", doc, "--config", str(config), "--reference", doc)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stderr.strip() == (
        f"rmjudge: {config} is not UTF-8 text (byte 0xe9 at offset 30): convert it first, e.g. iconv -f latin1 -t utf-8"
    )


def test_a_config_with_a_bom_and_its_question_file_are_read_as_text(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "question.txt").write_bytes(BOM + b"Release notes\r\na user can act on.\r\n")
    (tmp_path / ".rmjudge.toml").write_bytes(BOM + b'question = "question.txt"\r\nthreshold = 0.7\r\n')
    config = load_config(start=tmp_path)
    assert config.defaults.question == "Release notes\na user can act on.\n"
    assert config.defaults.threshold == 0.7


def test_an_unreadable_question_file_in_the_config_names_both(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "question.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / ".rmjudge.toml").write_text('question = "question.txt"\n')
    with pytest.raises(UsageError, match=r"\.rmjudge\.toml: question: .*question\.txt is not UTF-8 text"):
        load_config(start=tmp_path)
