"""OpenRLHF's remote reward protocol (``--reward.remote_url``), as rmjudge answers it.

OpenRLHF posts ``{"query": [...], "prompts": [...], "labels": [...]}``: each query is the prompt with
the policy's response appended (decoded with its special tokens), and the label is the dataset's label
field. It reads ``{"rewards": [...], "scores": [...], "extra_logs": {name: [...]}}`` back, one value
per query (OpenRLHF@3c3be62: openrlhf/cli/serve_rm.py, openrlhf/utils/agent.py).

What a reward is (every reward is in [0, 1], and ``scores`` are the same numbers):

- With a reference (the label is the reference text, or a JSON object ``{"reference": ...}``): the
  probability that the response is better than the reference, from both orders' token probabilities.
  Each response is judged on its own, so any batching of a group across requests or processes is safe.
- Without a reference (no label, or an empty one): the responses to one prompt in this request are
  judged against each other and their within-group scores mapped to [0, 1]. A prompt with a single
  response and no reference cannot be judged by a pairwise judge: that is a 422.
- An empty response (nothing left after the end-of-turn markers) gets 0 without being judged;
  identical responses to one prompt are judged once and share the reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from rmjudge.errors import InputError

# End-of-turn and end-of-text markers a decoded query may end with: not part of the response.
END_MARKERS = (
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>", "<eos>",
    "<end_of_turn>", "<｜end▁of▁sentence｜>",
)  # fmt: skip
# Characters allowed before the prompt in a query (a BOS token the policy's tokenizer decoded).
PREFIX_ALLOWED = 64
EMPTY_REWARD = 0.0


def _without_end_markers(text: str) -> str:
    text = text.rstrip()
    while marker := next((m for m in END_MARKERS if text.endswith(m)), None):
        text = text[: -len(marker)].rstrip()
    return text


def response_of(query: str, prompt: str, index: int) -> str:
    """The response in ``query``: what follows ``prompt``, without trailing end-of-turn markers."""
    start = query.find(prompt)
    if start < 0 or start > PREFIX_ALLOWED:
        raise InputError(
            f"query[{index}] does not start with prompts[{index}]: send each query as its prompt followed by "
            "the response, as OpenRLHF does"
        )
    return _without_end_markers(query[start + len(prompt) :]).lstrip()


def reference_of(label: Any, index: int) -> str | None:
    """The reference text a label carries: the label itself, or a JSON object's ``reference``; None for
    no label or an empty one."""
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            label = orjson.loads(label)
        except orjson.JSONDecodeError:
            return label  # a text that happens to start with a brace
    if isinstance(label, dict):
        if "reference" not in label:
            raise InputError(f'labels[{index}] is an object without "reference": give {{"reference": TEXT}}')
        label = label["reference"]
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise InputError(f"labels[{index}] must be a reference text (or null), not {type(label).__name__}")
    text = str(label)
    return text if text.strip() else None


@dataclass
class Group:
    """The queries of one prompt with one reference (or none): judged together."""

    prompt: str
    reference: str | None
    indices: list[int] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)

    def candidates(self) -> list[str]:
        """The distinct non-empty responses, in first-seen order: what gets judged."""
        return list(dict.fromkeys(r for r in self.responses if r.strip()))


def groups(query: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None) -> list[Group]:
    """The request's queries grouped by prompt and reference, in first-seen order; InputError for a
    query that does not hold its prompt, a bad label, or a lone response without a reference."""
    found: dict[tuple[str, str | None], Group] = {}
    for index, (text, prompt) in enumerate(zip(query, prompts, strict=True)):
        reference = reference_of(labels[index], index) if labels is not None else None
        group = found.setdefault((prompt, reference), Group(prompt, reference))
        group.indices.append(index)
        group.responses.append(response_of(text, prompt, index))
    for group in found.values():
        if group.reference is None and len(group.indices) == 1:
            raise InputError(
                f"query[{group.indices[0]}] has no reference and is the only response to its prompt: a pairwise "
                "judge needs a reference text in its label, or two or more responses to the prompt in one request"
            )
    return list(found.values())


def group_rewards(group: Group, judged: Sequence[float]) -> list[float]:
    """Each query's reward, given the rewards of ``group.candidates()`` (in that order)."""
    by_text = dict(zip(group.candidates(), judged, strict=True))
    return [by_text.get(response, EMPTY_REWARD) for response in group.responses]


def lone_rewards(group: Group) -> list[float] | None:
    """Rewards that need no judging, else None: only empty responses (0 each); without a reference, one
    distinct non-empty response (1 beside empty ones, which get 0; 0.5 each when all are the same)."""
    candidates = group.candidates()
    if not candidates:
        return [EMPTY_REWARD] * len(group.responses)
    if group.reference is not None or len(candidates) >= 2:
        return None
    if any(not r.strip() for r in group.responses):
        return [1.0 if r.strip() else EMPTY_REWARD for r in group.responses]
    return [0.5] * len(group.responses)


def answer(size: int, found: Sequence[Group], rewards_by_group: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The response body: rewards, scores (the same numbers, in [0, 1]) and per-query logs."""
    rewards = [0.0] * size
    with_reference = [0.0] * size
    group_size = [0.0] * size
    for group, values in zip(found, rewards_by_group, strict=True):
        for index, value in zip(group.indices, values, strict=True):
            rewards[index] = float(value)
            with_reference[index] = 1.0 if group.reference is not None else 0.0
            group_size[index] = float(len(group.indices))
    return {
        "rewards": rewards,
        "scores": list(rewards),
        "extra_logs": {"rmjudge_with_reference": with_reference, "rmjudge_group_size": group_size},
    }
