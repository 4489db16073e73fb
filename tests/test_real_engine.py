"""Real GGUFs through the real engine and the real CLI (Gemma 3 270M for speed, Qwen2.5-1.5B for the
RM-R1 Qwen chat template). These prove the judge works end to end; the fake-engine tests prove the logic."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from rmjudge.engines.base import AnswerFormat, Job, Sampling
from rmjudge.engines.llama import LlamaEngine
from rmjudge.errors import ExitCode
from rmjudge.prompts import Pair, load_template

from .conftest import ROOT, run_cli

pytestmark = pytest.mark.model
EXAMPLES = ROOT / "examples"
REFERENCE = json.loads((ROOT.parent / "shared" / "reference" / "rm-r1-prompts.json").read_text())["prompts"]


@pytest.fixture(scope="module")
def qwen_engine(qwen_path: Path) -> LlamaEngine:
    return LlamaEngine(qwen_path)


def rm_r1_messages(pair: Pair) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in load_template("instruct").render(pair)]


def test_qwen_prompt_tokens_are_the_chatml_rendering_of_rm_r1_messages(qwen_engine: LlamaEngine) -> None:
    pair = Pair(a="Paris.", b="Lyon.", question="What is the capital of France?")
    prompt = qwen_engine.format_prompt(rm_r1_messages(pair))
    # What RM-R1's Qwen models saw: ChatML from the GGUF's own template, special tokens as single ids.
    user = REFERENCE["RM_R1_SINGLE_TURN_INSTRUCT_USER_PROMPT"].format(
        question=pair.question, answer_a="Paris.", answer_b="Lyon."
    )
    expected = (
        f"<|im_start|>system\n{REFERENCE['RM_R1_INSTRUCT_SYSTEM_PROMPT']}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompt.text == expected
    assert list(prompt.tokens) == qwen_engine.tokenize(expected)
    im_start = qwen_engine.tokenize("<|im_start|>")
    assert len(im_start) == 1 and prompt.tokens.count(im_start[0]) == 3
    assert qwen_engine.info.chat_format == "gguf"


def test_second_order_reuses_the_evaluated_prefix(qwen_engine: LlamaEngine) -> None:
    pair = Pair(a="It is Paris.", b="It is Lyon.", question="What is the capital of France?")
    answer = AnswerFormat(
        stop="</answer>",
        probe="<answer>[[",
        choices=("A", "B"),
        accept_stop=lambda text: True,
        appendix=lambda text, read: None if read else "\n\n<answer>[[",
    )
    first, second = (
        Job(qwen_engine.format_prompt(rm_r1_messages(shown)), 4, Sampling(), answer) for shown in (pair, pair.swapped())
    )
    list(qwen_engine.run([first]))
    # A later run starts from what the context holds: only the part after the shared system prompt
    # and question is evaluated again.
    [(_, again)] = list(qwen_engine.run([second]))
    assert again.evaluated_prompt_tokens < len(second.prompt.tokens) // 4
    assert again.appendix == "\n\n<answer>[["
    probabilities = again.choice_probabilities
    assert sum(probabilities.values()) == pytest.approx(1.0) and all(0 < p < 1 for p in probabilities.values())


def test_qwen_full_judgment_through_the_cli(qwen_path: Path) -> None:
    result = run_cli(
        "compare", str(EXAMPLES / "a.txt"), str(EXAMPLES / "b.txt"), "-q", str(EXAMPLES / "question.txt"),
        "--model", str(qwen_path), "--max-tokens", "96", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["winner"] in ("A", "B", "tie")
    assert 0.0 <= data["confidence"] <= 1.0 and isinstance(data["consistent"], bool)
    assert [o["order"] for o in data["orders"]] == ["ab", "ba"]
    for order in data["orders"]:
        assert order["verdict"] in ("A", "B") and 0.0 < order["probability"] < 1.0
        assert order["tokens_in"] > 500 and 0 < order["tokens_out"] <= 96 and order["seconds"] > 0
        assert set(order["rationale"]) == {"task_type", "rubric", "justification", "solution", "evaluation", "thinking"}
        assert isinstance(order["forced"], bool) and not order["cached"]
    # The two orders see the same texts: the ba order's prompt is longer or equal only by the swap.
    assert data["orders"][0]["tokens_in"] == data["orders"][1]["tokens_in"]
    assert data["consistent"] == (data["orders"][0]["verdict"] == data["orders"][1]["verdict"])
    assert data["model"]["file"] == qwen_path.name and data["model"]["gguf_name"].startswith("Qwen2.5")
    assert data["template"]["id"] == "rm-r1-instruct" and data["template"]["chat_format"] == "gguf"
    assert data["sampling"]["max_tokens"] == 96 and data["versions"]["llama_cpp_python"]
    # Greedy decoding is reproducible, and the second run comes from the verdict cache.
    again = orjson.loads(run_cli(*result.args[3:]).stdout)
    assert all(o["cached"] for o in again["orders"]) and again["winner"] == data["winner"]


def compare_examples(model: Path, max_tokens: int) -> list[str]:
    """CLI arguments: the example pair, judged with ``model`` and a reasoning budget."""
    return [
        "compare",
        str(EXAMPLES / "a.txt"),
        str(EXAMPLES / "b.txt"),
        "--model",
        str(model),
        "--max-tokens",
        str(max_tokens),
    ]


def test_gemma_judgment_and_plain_chat_fallback(gemma_path: Path, tmp_path: Path) -> None:
    args = compare_examples(gemma_path, 16)
    result = run_cli(*args, "--no-cache", "--raw")
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)  # not a terminal: JSON without --json
    assert data["template"]["chat_format"] == "plain"  # Gemma 270M base carries no chat template
    assert all(o["tokens_out"] <= 16 and o["completion"] for o in data["orders"])
    # A forced order's completion ends with the verdict it was given.
    for order in data["orders"]:
        if order["forced"]:
            assert order["completion"].endswith(f"<answer>[[{order['position_verdict']}]]</answer>")
    # Greedy: the same completion again without the cache.
    again = orjson.loads(run_cli(*args, "--no-cache", "--raw").stdout)

    def outcome(judgment: dict) -> list[tuple[object, ...]]:
        return [(o["completion"], o["verdict"], round(o["probability"], 4)) for o in judgment["orders"]]

    assert outcome(again) == outcome(data)


def test_gemma_verdict_only_and_expect(gemma_path: Path) -> None:
    base = compare_examples(gemma_path, 0)
    data = orjson.loads(run_cli(*base).stdout)
    assert all(o["forced"] and o["tokens_out"] == 0 for o in data["orders"])
    winner = data["winner"]
    for expected in ("A", "B"):
        code = run_cli(*base, "--expect", expected).returncode
        assert code == (ExitCode.OK if winner == expected else ExitCode.NEGATIVE)


def test_show_prompt_needs_no_model_load(gemma_path: Path) -> None:
    result = run_cli(
        "compare", str(EXAMPLES / "a.txt"), str(EXAMPLES / "b.txt"), "--model", str(gemma_path), "--show-prompt"
    )
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["template"] == "rm-r1-instruct"
    ab, ba = data["orders"]["ab"], data["orders"]["ba"]
    assert [m["role"] for m in ab] == ["system", "user"] and ab[0] == ba[0] and ab[1] != ba[1]


def test_input_longer_than_the_context(gemma_path: Path, tmp_path: Path) -> None:
    long_text = tmp_path / "long.txt"
    long_text.write_text("The quick brown fox jumps over the lazy dog. " * 4000)  # ~40k tokens; Gemma has 32k
    result = run_cli("compare", str(long_text), str(EXAMPLES / "b.txt"), "--model", str(gemma_path))
    assert result.returncode == ExitCode.CONTEXT
    assert "more than the model's context of 32768" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_corrupt_and_truncated_models(gemma_path: Path, tmp_path: Path) -> None:
    header_cut, weights_cut = tmp_path / "header-cut.gguf", tmp_path / "weights-cut.gguf"
    with gemma_path.open("rb") as source:
        header_cut.write_bytes(source.read(1_000_000))  # inside the 4 MB header (262k-token vocabulary)
        weights_cut.write_bytes(header_cut.read_bytes() + source.read(100_000_000))  # header whole, weights cut
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    cases = ((header_cut, "is truncated"), (weights_cut, "could not load"), (not_gguf, "not a GGUF file"))
    for path, message in cases:
        result = run_cli("compare", str(EXAMPLES / "a.txt"), str(EXAMPLES / "b.txt"), "--model", str(path))
        assert result.returncode == ExitCode.MODEL, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
