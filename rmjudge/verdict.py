"""Read a verdict and its rationale out of an RM-R1 completion, and combine the two orders.

The rules, in the order the completion is read (left to right, one pass):

1. Thinking. For the reasoning family (RM-R1 DeepSeek-Distilled) the chat template opens ``<think>``
   in the prompt, so the completion starts inside the thinking and holds only ``</think>``. Nothing
   in the thinking counts. Its first ``</think>`` ends it; a later ``</think>`` outside any quote
   means that what came before it was thinking too (the last one stands), so answers written
   before it are dropped. The instruct family has no thinking.
2. Quotes and summaries. RM-R1's system prompt asks the model to quote and paraphrase the responses
   in ``<quote_A>``, ``<quote_B>``, ``<summary_A>`` and ``<summary_B>`` blocks, so their content is
   the judged texts, which may hold anything, verdict markup included. A block runs from its
   opening tag to the first closing tag of the same kind, of either letter (a model that mixes the
   letters up is not left inside a quote for the rest of its text); everything inside, other tags
   included, is content. A block the model opened and has not closed runs to the end of the text:
   a stop or a verdict in there counts for nothing. A closing tag with no open block is plain text.
   A prompt may leave a block open itself (a custom template whose user prompt ends in
   ``<quote_B>``): the completion then starts inside it, after the thinking (``opened``, as
   ``block_left_open`` finds it in the prompt).
3. The verdict is the last ``<answer>[[A]]</answer>`` or ``<answer>[[B]]</answer>`` (whitespace
   allowed inside) outside thinking and quotes: a model that restates its answer is read by its
   final word (RM-R1's evaluation, eval/reward-bench/rewardbench/generative.py in RM-R1-UIUC/RM-R1
   @ d4c2542, expects the completion to end with it).
4. Without such an answer, a bare ``[[A]]``/``[[B]]`` counts only in the last 80 characters of the
   text outside thinking and quotes: RM-R1's RL reward (rm_r1/verl/utils/reward_score/lm_as_judge.py)
   looked at no more than the last 80 characters.
5. Otherwise there is no verdict (``None``): the judge forces one, reading the next token after
   ``forced_appendix`` (which ends the thinking and closes an open quote first).

Generation stops at ``</answer>`` only where rules 1 and 2 let that answer count (``stop_counts``),
so a quoted ``</answer>`` does not end the judgment. The verdict's probabilities are those an engine
read where the text last ended with ``<answer>[[``; when that place is not the deciding answer (a
bare verdict, or a quoted ``<answer>[[`` after it), ``forced_appendix`` has them read again.

A known limit: a judged text holding a closing tag (``</quote_A>``, ``</think>``) that the model
copies verbatim ends the block early, as it would for a reader of the completion; the text alone
cannot tell such a copy from the model's own tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Bumped whenever parsing changes what a stored completion means (part of the verdict cache key).
# 2: a stop or verdict inside a quote/summary block left open counts for nothing; a later
#    </think> inside a quote no longer ends the thinking.
PARSER_VERSION = 2

_BARE = re.compile(r"\[\[\s*([AB])\s*\]\]")
_TAIL_CHARS = 80
_THINK_END = "</think>"
# Every piece of markup the reading turns on, in one pattern so a single pass finds them in order.
_MARKUP = re.compile(
    r"(?P<answer><answer>\s*\[\[\s*(?P<choice>[AB])\s*\]\]\s*</answer>)"
    r"|<(?P<closing>/?)(?P<kind>quote|summary)_(?P<letter>[AB])>"
    rf"|(?P<think_end>{_THINK_END})"
)
# Where an engine reads the verdict's probabilities: the text ends with the probe "<answer>[["
# (the llama engine allows whitespace around the brackets).
_PROBE = re.compile(r"<answer>\s*\[\s*\[")
FORCED_PREFIX = "<answer>[["


@dataclass
class _Reading:
    """What one pass over a completion found (rules in the module docstring)."""

    thinking_end: int | None  # where the answer part starts (after </think>); None: still thinking
    open_block: str | None = None  # "quote_B": the block left open at the end of the text
    answers: list[tuple[str, int]] = field(default_factory=list)  # (verdict, start) of counting answers
    outside: list[str] = field(default_factory=list)  # the text outside thinking and quotes, in pieces

    @property
    def at_the_end_outside(self) -> bool:
        """The end of the text is neither thinking nor inside a quote: markup written there counts."""
        return self.thinking_end is not None and self.open_block is None


def _read(text: str, reasoning: bool, opened: str | None = None) -> _Reading:
    reading = _Reading(thinking_end=None if reasoning else 0, open_block=None if reasoning else opened)
    segment_start = 0  # where the current stretch of outside text began
    for match in _MARKUP.finditer(text):
        if reading.thinking_end is None:
            if match["think_end"]:
                reading.thinking_end = segment_start = match.end()
                reading.open_block = opened
            continue
        if reading.open_block is not None:
            if match["closing"] and reading.open_block.startswith(match["kind"]):
                reading.open_block = None
                segment_start = match.end()
            continue
        if match["think_end"] and reasoning:
            # A later </think> outside quotes: everything before it was still thinking.
            reading.thinking_end = segment_start = match.end()
            reading.open_block = opened
            reading.answers.clear()
            reading.outside.clear()
        elif match["kind"] and not match["closing"]:
            reading.outside.append(text[segment_start : match.start()])
            reading.open_block = f"{match['kind']}_{match['letter']}"
        elif match["answer"]:
            reading.answers.append((match["choice"], match.start()))
    if reading.at_the_end_outside:
        reading.outside.append(text[segment_start:])
    return reading


def block_left_open(text: str) -> str | None:
    """The quote or summary block ``text`` leaves open at its end ("quote_B"), or None.

    For the judge's prompt: a template whose user prompt ends in ``<quote_B>`` has the model's reply
    start inside that quote (pass it to the functions below as ``opened``)."""
    return _read(text, reasoning=False).open_block


def _verdict(reading: _Reading) -> str | None:
    if reading.answers:
        return reading.answers[-1][0]
    # Pieces joined by a space: brackets split by a quote never make a verdict.
    bare = _BARE.findall(" ".join(reading.outside).rstrip()[-_TAIL_CHARS:])
    return bare[-1] if bare else None


def stop_counts(text: str, *, reasoning: bool, opened: str | None = None) -> bool:
    """Whether generation may stop on ``text``, which ends with ``</answer>``.

    It may not when that ``</answer>`` is thinking (the reasoning family before ``</think>``) or
    sits inside a quote or summary block the model opened and has not closed (or the prompt left
    open: ``opened``): it is then part of a judged text. Wherever it may, ``parse_verdict`` reads the
    answer it closes (if well formed)."""
    return _read(text, reasoning, opened).at_the_end_outside


def forced_appendix(text: str, *, reasoning: bool, probabilities_read: bool, opened: str | None = None) -> str | None:
    """What to append to ``text`` (the generated text) to read a verdict off the next token.

    None when ``text`` holds a verdict and ``probabilities_read`` says the engine read its
    probabilities: engines read them at the last place the text ended with ``<answer>[[``, so that
    place must be the answer that decides. Otherwise the appendix ends the thinking (reasoning
    family) and closes a quote or summary block left open, then opens an answer: the verdict is
    never read inside a judged text. ``text + appendix + "A]]</answer>"`` parses to ``A``.
    """
    reading = _read(text, reasoning, opened)
    if probabilities_read and reading.answers:
        _, start = reading.answers[-1]
        if not _PROBE.search(text, start + 1):
            return None
    if reading.thinking_end is None:
        closing = f"</{opened}>" if opened else ""
        return f"\n{_THINK_END}\n{closing}\n{FORCED_PREFIX}"
    closing = f"</{reading.open_block}>" if reading.open_block else ""
    separator = "\n\n" if text.strip() else ""
    return f"{closing}{separator}{FORCED_PREFIX}"


@dataclass(frozen=True)
class Rationale:
    """The parts of an RM-R1 completion a reader wants, each None when the model wrote none."""

    task_type: str | None = None  # "Chat" or "Reasoning"
    rubric: str | None = None
    justification: str | None = None
    solution: str | None = None
    evaluation: str | None = None
    thinking: str | None = None  # the reasoning family's <think> part


@dataclass(frozen=True)
class ParsedCompletion:
    verdict: str | None  # "A", "B", or None when the completion holds no final answer
    rationale: Rationale


def _tag(text: str, name: str) -> str | None:
    # The last complete block: models sometimes restate a section; the final one stands.
    matches = re.findall(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
    if matches:
        return matches[-1].strip()
    # A block the budget cut off (forced verdicts): what was written of it still explains the verdict.
    opened = text.rfind(f"<{name}>")
    if opened == -1:
        return None
    unfinished = text[opened + len(name) + 2 :].split("<answer>")[0].strip()
    return unfinished or None


def split_thinking(completion: str, reasoning: bool) -> tuple[str | None, str]:
    """(thinking, answer part). The DeepSeek template opens ``<think>`` in the prompt, so the
    completion holds only the closing tag; until it appears, everything is still thinking."""
    if not reasoning:
        return None, completion
    thinking_end = _read(completion, reasoning=True).thinking_end
    if thinking_end is None:
        return completion.removeprefix("<think>").strip(), ""
    thinking = completion[:thinking_end].removesuffix(_THINK_END)
    return thinking.removeprefix("<think>").strip(), completion[thinking_end:]


def parse_verdict(completion: str, *, reasoning: bool | None = None, opened: str | None = None) -> ParsedCompletion:
    """Parse an RM-R1 completion (the generated text only, never the prompt), by the rules in the
    module docstring.

    ``reasoning``: the completion comes from the DeepSeek-Distilled family, so only the text after
    ``</think>`` may hold the verdict. ``None`` decides by whether ``</think>`` occurs.
    ``opened``: the quote or summary block the prompt left open (``block_left_open``), where the
    completion starts (after the thinking).
    """
    if reasoning is None:
        reasoning = _THINK_END in completion
    thinking, answer_part = split_thinking(completion, reasoning)
    verdict = _verdict(_read(completion, reasoning, opened))

    rubric_block = _tag(answer_part, "rubric")
    justification = _tag(answer_part, "justify")
    rubric = re.sub(r"<justify>.*?</justify>", "", rubric_block, flags=re.DOTALL).strip() if rubric_block else None
    evaluation = _tag(answer_part, "eval")
    if evaluation is None and reasoning:
        # The reasoning family writes its conclusion as free text between </think> and <answer>.
        free = answer_part.split("<answer>")[0].strip()
        evaluation = free or None
    return ParsedCompletion(
        verdict=verdict,
        rationale=Rationale(
            task_type=_tag(answer_part, "type"),
            rubric=rubric,
            justification=justification,
            solution=_tag(answer_part, "solution"),
            evaluation=evaluation,
            thinking=thinking,
        ),
    )


def one_line_reason(rationale: Rationale, limit: int = 160) -> str:
    """A short reason for compact reports: the evaluation's last sentence, else the thinking's."""
    text = rationale.evaluation or rationale.thinking or ""
    text = " ".join(_read(text, reasoning=False).outside)  # quotes are the responses' words, not reasons
    text = re.sub(r"<[^>]+>", "", text)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s.strip()]
    # Section headers ("Clarity:") are not reasons: prefer the last full sentence.
    full = [s for s in sentences if s.endswith((".", "!", "?"))]
    reason = (full or sentences or [""])[-1]
    return reason if len(reason) <= limit else reason[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Combined:
    winner: str  # "A", "B" or "tie", in the user's labels
    probability_a: float | None  # P(A better), averaged over the orders that gave one
    confidence: float | None
    consistent: bool


def combine(verdicts: list[str], probabilities_a: list[float | None]) -> Combined:
    """Combine per-order verdicts, already mapped back to the user's labels.

    Agreement gives the winner; disagreement gives a tie (consistent: false). The confidence is the
    averaged probability of the winner; for a tie it is how close the averaged probability is to
    even (1.0 when the two orders cancel out exactly).
    """
    known = [p for p in probabilities_a if p is not None]
    probability_a = sum(known) / len(known) if known else None
    consistent = len(set(verdicts)) == 1
    if consistent:
        winner = verdicts[0]
        if probability_a is None:
            confidence = None
        else:
            confidence = probability_a if winner == "A" else 1.0 - probability_a
    else:
        winner = "tie"
        confidence = None if probability_a is None else 1.0 - abs(2.0 * probability_a - 1.0)
    return Combined(winner=winner, probability_a=probability_a, confidence=confidence, consistent=consistent)
