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
  judged against each other; each gets its mean probability of beating the others. It depends on the
  rest of the group, so a group must come in one request. A prompt with a single response and no
  reference cannot be judged by a pairwise judge: that is a 422.

The numbers are ``rmjudge.rewards``'s (``trl_rewards``: every group of the request in one stream of
pairs). A response that cannot be judged (too long for the judge's context) fails the request with a
413 that names it: a trainer should not learn from a made-up reward.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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


def _without_end_markers(text: str) -> str:
    text = text.rstrip()
    while marker := next((m for m in END_MARKERS if text.endswith(m)), None):
        text = text[: -len(marker)].rstrip()
    return text


def response_of(query: str, prompt: str, index: int) -> str:
    """The response in ``query``: what follows ``prompt``, without surrounding whitespace and trailing
    end-of-turn markers."""
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


def check_judgeable(prompts: Sequence[str], references: Sequence[str | None]) -> None:
    """InputError for a response without a reference that is the only one to its prompt: a pairwise judge
    has nothing to compare it with (``rewards`` would give it an even 0.5, useless to a trainer)."""
    alone = Counter(prompt for prompt, reference in zip(prompts, references, strict=True) if reference is None)
    for index, (prompt, reference) in enumerate(zip(prompts, references, strict=True)):
        if reference is None and alone[prompt] == 1:
            raise InputError(
                f"query[{index}] has no reference and is the only response to its prompt: a pairwise judge needs a "
                "reference text in its label, or two or more responses to the prompt in one request"
            )


def answer(prompts: Sequence[str], references: Sequence[str | None], rewards: Sequence[float]) -> dict[str, Any]:
    """The response body: rewards, scores (the same numbers, in [0, 1]) and per-query logs."""
    group_sizes = Counter(zip(prompts, references, strict=True))
    return {
        "rewards": [float(r) for r in rewards],
        "scores": [float(r) for r in rewards],
        "extra_logs": {
            "rmjudge_with_reference": [0.0 if r is None else 1.0 for r in references],
            "rmjudge_group_size": [float(group_sizes[key]) for key in zip(prompts, references, strict=True)],
        },
    }
