"""Rewards: P(beats the reference), within-group scores, and the reward function called exactly as
TRL's GRPOTrainer calls it (plain and conversational, sync and async); then the real Gemma GGUF."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from rmjudge.cache import VerdictCache
from rmjudge.errors import ContextTooLongError, ExitCode, UsageError
from rmjudge.judge import Judge
from rmjudge.prompts import Message
from rmjudge.rewards import async_grpo_reward, grpo_reward, rewards
from tests.judges import StrengthJudge


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class TrainerState:
    """Stands in for transformers.TrainerState: TRL passes it, the reward function must ignore it."""

    global_step = 3


def call_like_trl(reward: Callable[..., Any], inputs: list[dict[str, Any]], completions: list[Any]) -> Any:
    """What GRPOTrainer._calculate_rewards does (huggingface/trl trl/trainer/grpo_trainer.py): every
    column but prompt/completion/completion_ids as a list, plus trainer_state, log_extra, log_metric."""
    prompts = [example["prompt"] for example in inputs]
    completion_ids = [[ord(c) for c in str(completion)] for completion in completions]
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]
    reward_kwargs: dict[str, Any] = {key: [example[key] for example in inputs] for key in keys}
    reward_kwargs["trainer_state"] = TrainerState()
    reward_kwargs["log_extra"] = lambda *args, **kwargs: None
    reward_kwargs["log_metric"] = lambda *args, **kwargs: None
    if asyncio.iscoroutinefunction(reward):
        # TRL awaits it on its own event loop, in a daemon thread.
        return asyncio.run(
            reward(prompts=prompts, completions=completions, completion_ids=completion_ids, **reward_kwargs)
        )
    return reward(prompts=prompts, completions=completions, completion_ids=completion_ids, **reward_kwargs)


STRENGTHS = {"great": 1.5, "good": 0.5, "meh": -0.2, "bad": -1.0, "gold": 0.0, "fine": 0.1, "poor": -0.6}


def judge() -> StrengthJudge:
    return StrengthJudge(dict(STRENGTHS))


# -- rewards() ---------------------------------------------------------------------------------


def test_reward_against_a_reference_is_p_beats_reference() -> None:
    strengths = judge()
    scores = rewards(strengths, "q", ["great", "bad", "meh"], reference="gold")
    assert scores == pytest.approx([sigmoid(1.5), sigmoid(-1.0), sigmoid(-0.2)])
    assert len(strengths.calls) == 1
    assert [(p.a, p.b) for p in strengths.calls[0]] == [("great", "gold"), ("bad", "gold"), ("meh", "gold")]


def test_within_group_reward_is_the_mean_p_of_beating_the_others() -> None:
    strengths = judge()
    group = ["great", "good", "bad"]
    scores = rewards(strengths, "q", group)
    expected = [
        (sigmoid(1.5 - 0.5) + sigmoid(1.5 + 1.0)) / 2,
        (sigmoid(0.5 - 1.5) + sigmoid(0.5 + 1.0)) / 2,
        (sigmoid(-1.0 - 1.5) + sigmoid(-1.0 - 0.5)) / 2,
    ]
    assert scores == pytest.approx(expected)
    assert sum(scores) / 3 == pytest.approx(0.5)  # P(i beats j) + P(j beats i) = 1
    assert [len(call) for call in strengths.calls] == [3]  # every pair, one stream


def test_repeated_completions_tie_and_are_judged_once() -> None:
    strengths = judge()
    scores = rewards(strengths, "q", ["good", "bad", "good"])
    p = sigmoid(0.5 + 1.0)
    assert scores == pytest.approx([(p + 0.5) / 2, 1 - p, (p + 0.5) / 2])
    assert [(pair.a, pair.b) for pair in strengths.calls[0]] == [("good", "bad")]


def test_a_group_of_one_is_even() -> None:
    assert rewards(judge(), "q", ["meh"]) == [0.5]


def test_reward_errors_name_the_completion() -> None:
    strengths = StrengthJudge({"ok": 0.0, "x" * 40: 0.0, "gold": 0.0}, context=30)
    with pytest.raises(ContextTooLongError, match=r"^completions\[1\]: ") as raised:
        rewards(strengths, "q", ["ok", "x" * 40], reference="gold")
    assert raised.value.exit_code == ExitCode.CONTEXT


def test_rewards_take_a_conversation() -> None:
    strengths = judge()
    turns = [Message("user", "hi"), Message("assistant", "hello"), Message("user", "and?")]
    rewards(strengths, None, ["good", "bad"], conversation=turns)
    assert strengths.calls[0][0].conversation == tuple(turns)


# -- TRL's calling convention ------------------------------------------------------------------


@pytest.mark.parametrize("make", [grpo_reward, async_grpo_reward])
def test_grpo_reward_plain_with_a_reference_column(make: Callable[..., Any]) -> None:
    strengths = judge()
    reward = make(strengths)
    # Two prompts, num_generations 3: TRL repeats each row once per completion.
    inputs = [{"prompt": "q1", "reference": "gold", "id": 1}] * 3 + [{"prompt": "q2", "reference": "good", "id": 2}] * 3
    completions = ["great", "bad", "meh", "great", "good", "poor"]
    scores = call_like_trl(reward, inputs, completions)
    assert isinstance(scores, list) and all(isinstance(s, float) for s in scores)
    assert scores == pytest.approx(
        [sigmoid(1.5), sigmoid(-1.0), sigmoid(-0.2), sigmoid(1.5 - 0.5), 0.5, sigmoid(-0.6 - 0.5)]
    )
    assert len(strengths.calls) == 1 and len(strengths.calls[0]) == 6  # the whole batch in one stream
    assert [p.question for p in strengths.calls[0]] == ["q1"] * 3 + ["q2"] * 3
    assert reward.__name__ == "rmjudge"
    assert asyncio.iscoroutinefunction(reward) == (make is async_grpo_reward)


@pytest.mark.parametrize("make", [grpo_reward, async_grpo_reward])
def test_grpo_reward_conversational(make: Callable[..., Any]) -> None:
    strengths = judge()
    reward = make(strengths, name="judge_gemma")
    system = {"role": "system", "content": "Answer briefly."}
    single = [system, {"role": "user", "content": "Best fruit?"}]
    multi = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Best colour?"}]},
    ]
    inputs = [{"prompt": single}] * 2 + [{"prompt": multi}] * 2
    completions = [[{"role": "assistant", "content": text}] for text in ("great", "bad", "good", "meh")]
    scores = call_like_trl(reward, inputs, completions)
    # No reference column: each prompt's group is scored within itself, never across groups.
    assert scores == pytest.approx([sigmoid(2.5), sigmoid(-2.5), sigmoid(0.7), sigmoid(-0.7)])
    pairs = strengths.calls[0]
    assert [(p.a, p.b) for p in pairs] == [("great", "bad"), ("good", "meh")]
    assert pairs[0].question == "Answer briefly.\n\nBest fruit?" and not pairs[0].conversation
    assert pairs[1].conversation == (
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Best colour?"),
    )
    assert reward.__name__ == "judge_gemma"


def test_rows_without_a_reference_are_scored_within_their_group() -> None:
    strengths = judge()
    inputs = [{"prompt": "q", "reference": None}] * 2 + [{"prompt": "q", "reference": "gold"}] * 2
    scores = call_like_trl(grpo_reward(strengths), inputs, ["great", "bad", "great", "bad"])
    assert scores == pytest.approx([sigmoid(2.5), sigmoid(-2.5), sigmoid(1.5), sigmoid(-1.0)])


def test_reference_column_can_be_renamed_or_ignored() -> None:
    inputs = [{"prompt": "q", "answer": "gold"}] * 2
    renamed = call_like_trl(grpo_reward(judge(), reference_column="answer"), inputs, ["great", "bad"])
    assert renamed == pytest.approx([sigmoid(1.5), sigmoid(-1.0)])
    ignored = call_like_trl(
        grpo_reward(judge(), reference_column=None), [{"prompt": "q", "reference": "gold"}] * 2, ["great", "bad"]
    )
    assert ignored == pytest.approx([sigmoid(2.5), sigmoid(-2.5)])


def test_a_completion_too_long_gets_none_and_a_warning() -> None:
    strengths = StrengthJudge({"ok": 0.0, "x" * 40: 0.0, "gold": 1.0}, context=30)
    with pytest.warns(UserWarning, match=r"1 of 2 completions could not be judged.*completions\[1\]"):
        scores = call_like_trl(grpo_reward(strengths), [{"prompt": "q", "reference": "gold"}] * 2, ["ok", "x" * 40])
    assert scores[0] == pytest.approx(sigmoid(-1.0)) and scores[1] is None


@pytest.mark.parametrize(
    ("prompts", "completions", "message"),
    [
        (["q"], ["a", "b"], "1 prompts for 2 completions"),
        ([[{"role": "assistant", "content": "x"}]], ["a"], "must end with a user turn"),
        ([[{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}]], ["a"], "role 'tool'"),
        ([42], ["a"], "must be a string or a list of"),
    ],
)
def test_bad_batches_are_usage_errors(prompts: Sequence[Any], completions: Sequence[Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        grpo_reward(judge())(prompts=prompts, completions=completions)


# -- the real model ----------------------------------------------------------------------------


@pytest.mark.model
def test_rewards_on_gemma(gemma_path: Path, tmp_path: Path) -> None:
    # With the verdict cache, the reward function's pairs must be exactly rewards()'s to give the same
    # numbers (llama.cpp's prefix reuse moves a probability in its third decimal between runs).
    gemma = Judge(gemma_path, max_tokens=0, cache=VerdictCache(tmp_path / "v.sqlite3"))
    question = "What is the capital of France?"
    completions = ["Paris.", "It is Lyon.", "London."]
    against = gemma.rewards(question, completions, reference="The capital of France is Paris.")
    within = gemma.rewards(question, completions)
    for scores in (against, within):
        assert len(scores) == 3 and all(0.0 < s < 1.0 for s in scores)
    assert sum(within) / 3 == pytest.approx(0.5)  # the group's P(i beats j) pairs sum to one each
    # The reward function gives the same numbers, called as TRL calls it.
    inputs = [{"prompt": question, "reference": "The capital of France is Paris."}] * 3
    assert call_like_trl(grpo_reward(gemma), inputs, completions) == pytest.approx(against)
