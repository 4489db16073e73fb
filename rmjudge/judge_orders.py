"""One order of a pair (one sample of it) on its way through the judge: its plan (a cache hit or a job
for the engine), RM-R1's answer markup as the engine needs it, and its output read into an ``OrderJudgment``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rmjudge.engines import AnswerFormat, Job, Output
from rmjudge.errors import RmjudgeError, UsageError
from rmjudge.judgment import OrderJudgment
from rmjudge.prompts import Message, Pair, PromptTemplate
from rmjudge.verdict import block_left_open, forced_appendix, parse_verdict, stop_counts

CHOICES = ("A", "B")
STOP = "</answer>"
PROBE = "<answer>[["


@dataclass
class OrderPlan:
    """One order of a pair (one sample of it) on its way: a cache hit (``stored``) or a job for the engine."""

    order: str
    sample: int
    opened: str | None  # the quote block the template leaves open, where the completion starts
    key: str | None  # the verdict cache key (None without a cache)
    stored: dict[str, Any] | None  # what the cache holds for this order, once known
    cached: bool
    job: Job | None


@dataclass
class PairPlan:
    orders: list[OrderPlan]
    error: RmjudgeError | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or all(o.stored is not None for o in self.orders)


def template_messages(template: PromptTemplate, pair: Pair) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in template.render(pair)]


def block_the_template_opens(template: PromptTemplate, pair: Pair) -> str | None:
    """The quote block a template leaves open at the end of its prompt (a custom one ending in
    ``<quote_B>``), read with neutral texts in place of the judged ones: they cannot open one."""
    neutral = Pair(
        a="x",
        b="x",
        question=None if pair.question is None else "x",
        conversation=tuple(Message(m.role, "x") for m in pair.conversation),
    )
    return block_left_open(template.render(neutral)[-1].content)


def checked_orders(orders: Sequence[str]) -> tuple[str, ...]:
    if not orders or any(order not in ("ab", "ba") for order in orders):
        raise UsageError(f"orders {list(orders)!r}: give one or both of 'ab' and 'ba'")
    return tuple(orders)


def answer_format(reasoning: bool, opened: str | None) -> AnswerFormat:
    """RM-R1's answer markup, as the engine needs it: where generation may stop and where the verdict is read."""

    def accept_stop(text: str) -> bool:
        # A </answer> inside a quote of a response, or inside the thinking, is not the end.
        return stop_counts(text, reasoning=reasoning, opened=opened)

    def appendix(text: str, probabilities_read: bool) -> str | None:
        # No verdict (budget spent, or the model stopped without one): close the reasoning or the quote
        # and ask for it. With a verdict but no reading of it, ask again after it for the confidence.
        return forced_appendix(text, reasoning=reasoning, probabilities_read=probabilities_read, opened=opened)

    return AnswerFormat(stop=STOP, probe=PROBE, choices=CHOICES, accept_stop=accept_stop, appendix=appendix)


def stored_output(output: Output, *, reasoning: bool, opened: str | None) -> dict[str, Any]:
    """An order's output as the verdict cache holds it."""
    forced = parse_verdict(output.text, reasoning=reasoning, opened=opened).verdict is None
    probabilities = dict(output.choice_probabilities)
    completion = output.text
    if forced:  # the engine read the verdict after the appendix: write it out as the model would have
        choice = max(probabilities, key=probabilities.__getitem__)
        completion += f"{output.appendix or ''}{choice}]]{STOP}"
    return {
        "completion": completion,
        "probabilities": probabilities,
        "forced": forced,
        "tokens_out": len(output.tokens),
        "stopped_by": output.stopped_by,
        "seconds": output.seconds,
        "tokens_in": output.prompt_tokens,
    }


def order_judgment(plan: OrderPlan, *, reasoning: bool) -> OrderJudgment:
    """A stored order's reading, in the user's labels."""
    stored, order = plan.stored, plan.order
    assert stored is not None
    parsed = parse_verdict(stored["completion"], reasoning=reasoning, opened=plan.opened)
    position_verdict = parsed.verdict or max(stored["probabilities"], key=stored["probabilities"].get)
    p_position_a = stored["probabilities"]["A"]
    verdict = position_verdict if order == "ab" else {"A": "B", "B": "A"}[position_verdict]
    probability_a = p_position_a if order == "ab" else 1.0 - p_position_a
    return OrderJudgment(
        order=order,
        sample=plan.sample,
        verdict=verdict,
        position_verdict=position_verdict,
        probability=probability_a if verdict == "A" else 1.0 - probability_a,
        probability_a=probability_a,
        forced=stored["forced"],
        rationale=parsed.rationale,
        tokens_in=stored["tokens_in"],
        tokens_out=stored["tokens_out"],
        seconds=0.0 if plan.cached else stored["seconds"],
        stopped_by=stored["stopped_by"],
        cached=plan.cached,
        completion=stored["completion"],
    )
