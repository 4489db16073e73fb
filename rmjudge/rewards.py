"""Rewards for reinforcement learning from the pairwise judge: a number in [0, 1] per completion.

- With a reference: P(the completion beats the reference), the judgment's order-averaged probability
  with the completion shown as A. Each completion is scored on its own, so it does not matter how a
  trainer splits a batch.
- Without one: the completion's mean P(beating each other completion of the same prompt), from every
  pair of the group (identical texts count as even). This depends on the rest of the group: it is
  unsafe when a trainer splits one prompt's group across processes (TRL's GRPOTrainer computes
  rewards on each process's slice of the batch before gathering, so on several GPUs a group can be
  split and each part is scored against a different set of rivals). Use a reference column there.

``grpo_reward(judge)`` is a reward function with TRL GRPOTrainer's calling convention (keyword
arguments ``prompts`` and ``completions``, plain strings or message lists, every dataset column among
the other keyword arguments); ``async_grpo_reward`` is the same as an ``async def`` for TRL's async
reward functions. Neither needs TRL.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from rmjudge.bradley_terry import REFERENCE, win_matrix
from rmjudge.errors import ContextTooLongError, RmjudgeError, UsageError
from rmjudge.prompts import Message, Pair
from rmjudge.ranking import Comparison, PairJudge

RewardFunction = Callable[..., list[float | None]]


@dataclass(frozen=True)
class _Group:
    """Completions of one prompt, scored together: against the reference, or against each other."""

    request: Pair  # the question or conversation; the texts are filled in per comparison
    members: list[int]  # indices into the completions
    reference: str | None


def rewards(
    judge: PairJudge,
    question: str | None,
    completions: Sequence[str],
    *,
    reference: str | None = None,
    conversation: Sequence[Message] = (),
) -> list[float]:
    """A reward in [0, 1] per completion of ``question`` (or of ``conversation``, ending with a user turn).

    With ``reference``: P(completion beats the reference). Without: the mean P(beating each other
    completion), which depends on the whole group (see the module's note on split groups). Empty and
    repeated completions are judged like any other. Raises the first error, naming the completion.
    """
    request = Pair(a="", b="", question=question, conversation=tuple(conversation))
    scores, errors = _score(judge, [_Group(request, list(range(len(completions))), reference)], completions)
    if errors:
        index, error = min(errors.items())
        raise _named(error, f"completions[{index}]")
    return [score for score in scores if score is not None]


def _named(error: RmjudgeError, name: str) -> RmjudgeError:
    if isinstance(error, ContextTooLongError):
        return ContextTooLongError(f"{name}: {error}", needed=error.needed, available=error.available)
    named = type(error)(f"{name}: {error}")
    named.exit_code = error.exit_code
    return named


def _score(
    judge: PairJudge, groups: Sequence[_Group], completions: Sequence[str]
) -> tuple[list[float | None], dict[int, RmjudgeError]]:
    """Every group's comparisons in one ``judge_many`` stream; the scores (None where a completion
    could not be judged) and each failed completion's error."""
    plan: list[tuple[_Group, int, int]] = []  # (group, completion, opponent completion or REFERENCE)
    for group in groups:
        if group.reference is not None:
            plan += [(group, member, REFERENCE) for member in group.members]
        else:
            distinct = list(_first_of(group.members, completions).values())
            plan += [(group, a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]

    def pair(group: _Group, a: int, b: int) -> Pair:
        opponent = group.reference if b == REFERENCE else completions[b]
        assert opponent is not None
        return replace(group.request, a=completions[a], b=opponent)

    judged: dict[int, list[Comparison]] = {id(group): [] for group in groups}
    errors: dict[int, RmjudgeError] = {}
    results = judge.judge_many(pair(*step) for step in plan)
    for (group, a, b), result in zip(plan, results, strict=True):
        if isinstance(result, RmjudgeError):
            errors.setdefault(a, result)
            if b != REFERENCE:
                errors.setdefault(b, result)
            continue
        judged[id(group)].append(Comparison(a, b, result))
    scores: list[float | None] = [None] * len(completions)
    for group in groups:
        for member, score in _group_scores(group, judged[id(group)], completions).items():
            scores[member] = score
    # A completion with any score was judged well enough; the error stays only for the others.
    return scores, {index: error for index, error in errors.items() if scores[index] is None}


def _first_of(members: Sequence[int], completions: Sequence[str]) -> dict[str, int]:
    """Each distinct text's first member, in the order they first appear."""
    first: dict[str, int] = {}
    for member in members:
        first.setdefault(completions[member], member)
    return first


def _group_scores(group: _Group, comparisons: list[Comparison], completions: Sequence[str]) -> dict[int, float]:
    """Each member's score; a member none of whose comparisons could be judged gets none."""
    if group.reference is not None:
        return {c.a: c.judgment.probability_a for c in comparisons}
    matrix = win_matrix(comparisons, len(completions))
    # Only the first of identical texts was judged; the others share its row, and tie with it.
    first_of = _first_of(group.members, completions)
    scores = {}
    for member in group.members:
        text = completions[member]
        row = matrix[first_of[text]]
        rivals = [row[first_of[completions[o]]] for o in group.members if completions[o] != text]
        judged = [p for p in rivals if p is not None]
        if rivals and not judged:
            continue  # every comparison failed
        values = judged + [0.5] * (len(group.members) - 1 - len(rivals))
        scores[member] = sum(values) / len(values) if values else 0.5  # alone in its group: even
    return scores


# -- TRL's calling convention ------------------------------------------------------------------


def _content_text(content: Any, where: str) -> str:
    """A message content: a string, or a list of parts of which the text parts are kept."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    raise UsageError(f"{where}: a message content must be a string or a list of parts, not {type(content).__name__}")


def _messages(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(m, Mapping) and "role" in m for m in value):
        raise UsageError(f"{where} must be a string or a list of {{role, content}} messages")
    return value


def request_of(prompt: Any, where: str = "prompt") -> Pair:
    """A TRL prompt (a string, or a list of messages ending with a user turn) as a Pair with no texts.

    System (and developer) messages are put before the first user turn: RM-R1's prompt has no place
    of its own for them, and they often say what a good answer is.
    """
    if isinstance(prompt, str):
        return Pair(a="", b="", question=prompt)
    system: list[str] = []
    turns: list[Message] = []
    for number, message in enumerate(_messages(prompt, where)):
        role, text = message["role"], _content_text(message.get("content", ""), f"{where}[{number}]")
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant"):
            turns.append(Message(role, text))
        else:
            raise UsageError(f"{where}[{number}] has role {role!r}: the judge takes system, user and assistant turns")
    if not turns or turns[-1].role != "user":
        raise UsageError(f"{where} must end with a user turn: the request the completions answer")
    if system:
        first = next(i for i, turn in enumerate(turns) if turn.role == "user")
        turns[first] = Message("user", "\n\n".join([*system, turns[first].content]))
    if len(turns) == 1:
        return Pair(a="", b="", question=turns[0].content)
    return Pair(a="", b="", conversation=tuple(turns))


def completion_text(completion: Any, where: str = "completion") -> str:
    """A TRL completion: a string, or a list of messages (``[{"role": "assistant", "content": ...}]``)."""
    if isinstance(completion, str):
        return completion
    messages = _messages(completion, where)
    return "\n\n".join(
        _content_text(m.get("content", ""), f"{where}[{i}]") for i, m in enumerate(messages) if m["role"] == "assistant"
    )


def trl_rewards(
    judge: PairJudge, prompts: Sequence[Any], completions: Sequence[Any], references: Sequence[Any] | None
) -> list[float | None]:
    """Rewards for a TRL batch: completions grouped by prompt (and reference), all judged in one stream.

    A completion that cannot be judged (too long for the model's context) gets None, which TRL turns
    into NaN and leaves out of that sample's reward; a warning says how many.
    """
    if len(prompts) != len(completions):
        raise UsageError(
            f"got {len(prompts)} prompts for {len(completions)} completions: give one prompt per completion"
        )
    if references is not None and len(references) != len(completions):
        raise UsageError(
            f"got {len(references)} references for {len(completions)} completions: give one per completion"
        )
    texts = [completion_text(c, f"completions[{i}]") for i, c in enumerate(completions)]
    groups: dict[tuple[bytes, str | None], _Group] = {}
    for index, prompt in enumerate(prompts):
        reference = None
        if references is not None and references[index] is not None:
            reference = completion_text(references[index], f"reference[{index}]")
        key = (orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS, default=repr), reference)
        if key not in groups:
            groups[key] = _Group(request_of(prompt, f"prompts[{index}]"), [], reference)
        groups[key].members.append(index)
    scores, errors = _score(judge, list(groups.values()), texts)
    if errors:
        index, error = min(errors.items())
        warnings.warn(
            f"rmjudge: {len(errors)} of {len(texts)} completions could not be judged (their reward is None); "
            f"the first, completions[{index}]: {error}",
            stacklevel=3,
        )
    return scores


def grpo_reward(
    judge: PairJudge, *, reference_column: str | None = "reference", name: str = "rmjudge"
) -> RewardFunction:
    """A reward function for TRL's ``GRPOTrainer(reward_funcs=[grpo_reward(judge)])``.

    TRL calls it with keyword arguments ``prompts``, ``completions`` and every dataset column (others,
    such as ``completion_ids`` and ``trainer_state``, are ignored). A ``reference_column`` column
    scores each completion against its row's reference (rows without one, and datasets without the
    column, are scored within their group). ``name`` is what TRL logs the reward as. Calls from
    several threads take turns: one judge runs one batch at a time.
    """
    lock = threading.Lock()

    def reward(*, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        references = columns.get(reference_column) if reference_column else None
        with lock:
            return trl_rewards(judge, prompts, completions, references)

    reward.__name__ = reward.__qualname__ = name
    return reward


def async_grpo_reward(
    judge: PairJudge, *, reference_column: str | None = "reference", name: str = "rmjudge"
) -> Callable[..., Coroutine[Any, Any, list[float | None]]]:
    """``grpo_reward`` as an ``async def``: TRL runs async reward functions concurrently on its own
    event loop; the judging runs in a worker thread so the loop stays free for the others."""
    judge_batch = grpo_reward(judge, reference_column=reference_column, name=name)

    async def reward(*, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return await asyncio.to_thread(judge_batch, prompts=prompts, completions=completions, **columns)

    reward.__name__ = reward.__qualname__ = name
    return reward
