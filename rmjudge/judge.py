"""A pair in, a judgment out: render both orders, generate, parse, force if needed, combine."""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmjudge import __version__
from rmjudge.cache import VerdictCache, cache_key
from rmjudge.engine import Engine, Sampling
from rmjudge.errors import ContextTooLongError, UsageError
from rmjudge.models import ResolvedModel
from rmjudge.prompts import Message, Pair, PromptTemplate, detect_family, load_template
from rmjudge.verdict import (
    PARSER_VERSION,
    Rationale,
    block_left_open,
    combine,
    forced_appendix,
    parse_verdict,
    stop_counts,
)

ORDERS = {"both": ("ab", "ba"), "ab": ("ab",), "ba": ("ba",)}
# Per family: the reasoning family thinks at length before it answers.
DEFAULT_MAX_TOKENS = {"instruct": 2048, "reasoning": 4096}
VERDICT_ROOM = 32  # tokens kept free for a forced verdict
CHOICES = ("A", "B")


@dataclass(frozen=True)
class OrderJudgment:
    """One order's judgment. ``verdict`` is in the user's labels; ``position_verdict`` is what the
    model answered about the positions it saw (they differ in the ``ba`` order)."""

    order: str  # "ab": the user's A shown as Chatbot A; "ba": swapped
    verdict: str
    position_verdict: str
    probability: float  # P(verdict) at the verdict token, normalised over A and B
    probability_a: float  # the same reading, as P(the user's A is better)
    forced: bool  # no answer within the budget: the verdict was read off after "<answer>[["
    rationale: Rationale
    tokens_in: int
    tokens_out: int
    seconds: float
    stopped_by: str  # "stop", "eos", "length", or "none" (budget 0)
    cached: bool
    completion: str = field(repr=False)

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not raw:
            del data["completion"]
        return data


@dataclass(frozen=True)
class Judgment:
    winner: str  # "A", "B" or "tie"
    confidence: float
    consistent: bool  # every order gave the same winner
    probability_a: float
    orders: list[OrderJudgment]
    meta: dict[str, Any]  # model, template, sampling, versions: what reproduces this judgment

    @property
    def forced(self) -> bool:
        return any(o.forced for o in self.orders)

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "confidence": self.confidence,
            "consistent": self.consistent,
            "probability_a": self.probability_a,
            "orders": [o.to_dict(raw) for o in self.orders],
            **self.meta,
        }


def _messages(template: PromptTemplate, pair: Pair) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in template.render(pair)]


def _block_the_template_opens(template: PromptTemplate, pair: Pair) -> str | None:
    """The quote block a template leaves open at the end of its prompt (a custom one ending in
    ``<quote_B>``), read with neutral texts in place of the judged ones: they cannot open one."""
    neutral = Pair(
        a="x",
        b="x",
        question=None if pair.question is None else "x",
        conversation=tuple(Message(m.role, "x") for m in pair.conversation),
    )
    return block_left_open(template.render(neutral)[-1].content)


class Judge:
    """Judge pairs with one model, loaded once.

    >>> judge = Judge(model="path/to/model.gguf")            # doctest: +SKIP
    >>> judge.compare("What is 2+2?", "4", "5").winner        # doctest: +SKIP
    'A'
    """

    def __init__(
        self,
        model: str | Path | ResolvedModel | None = None,
        *,
        template: str | None = None,
        max_tokens: int | None = None,
        order: str = "both",
        sampling: Sampling | None = None,
        gpu_layers: int | None = None,
        threads: int | None = None,
        cache: VerdictCache | None = None,
        engine: Engine | None = None,
        debug: bool = False,
    ) -> None:
        if order not in ORDERS:
            raise UsageError(f"--order {order!r}: use both, ab or ba")
        if max_tokens is not None and max_tokens < 0:
            raise UsageError("--max-tokens must be 0 or more (0: no reasoning, verdict from probabilities)")
        self.order = order
        self.sampling = sampling or Sampling()
        self.cache = cache
        self._model_sha256: str | None = None
        if engine is None:
            from rmjudge.engine import LlamaEngine
            from rmjudge.models import resolve_model

            # An alias or hf:// spec is pulled on first use; a ResolvedModel is used as it is.
            resolved = model if isinstance(model, ResolvedModel) else resolve_model(str(model) if model else None)
            self._model_sha256 = resolved.sha256
            engine = LlamaEngine(resolved.path, gpu_layers=gpu_layers, threads=threads, debug=debug)
        self.engine = engine
        self.template = load_template(template or detect_family(engine.info.metadata))
        self.max_tokens = DEFAULT_MAX_TOKENS[self.template.family] if max_tokens is None else max_tokens

    def with_max_tokens(self, max_tokens: int) -> Judge:
        """The same judge, sharing its loaded engine, template and cache, with another reasoning budget."""
        other = copy.copy(self)
        other.max_tokens = max_tokens
        return other

    @property
    def reasoning(self) -> bool:
        return self.template.family == "reasoning"

    @property
    def model_sha256(self) -> str:
        if self._model_sha256 is None:
            from rmjudge.models import file_sha256

            self._model_sha256 = file_sha256(self.engine.info.path)
        return self._model_sha256

    def meta(self) -> dict[str, Any]:
        info = self.engine.info
        return {
            "model": {"file": info.path.name, "sha256": self.model_sha256, "gguf_name": info.name},
            "template": {
                "id": self.template.id,
                "family": self.template.family,
                "sha256": self.template.sha256,
                "chat_format": getattr(self.engine, "chat_format", "gguf"),
            },
            "sampling": {**asdict(self.sampling), "max_tokens": self.max_tokens},
            "versions": {"rmjudge": __version__, **self.engine.versions()},
        }

    def prompt_messages(self, pair: Pair, order: str = "ab") -> list[dict[str, str]]:
        """The exact chat messages the model sees for ``pair`` in ``order``."""
        return _messages(self.template, pair if order == "ab" else pair.swapped())

    def compare(self, question: str | None, a: str, b: str) -> Judgment:
        """Which of ``a`` and ``b`` answers ``question`` better (None: the default task statement)."""
        return self.judge(Pair(a=a, b=b, question=question))

    def judge(self, pair: Pair, orders: tuple[str, ...] | None = None) -> Judgment:
        """Judge ``pair`` in each order (default: the judge's ``order``) and combine."""
        results = [self._judge_order(pair, order) for order in (orders or ORDERS[self.order])]
        combined = combine([r.verdict for r in results], [r.probability_a for r in results])
        assert combined.probability_a is not None and combined.confidence is not None
        return Judgment(
            winner=combined.winner,
            confidence=combined.confidence,
            consistent=combined.consistent,
            probability_a=combined.probability_a,
            orders=results,
            meta=self.meta(),
        )

    def check_fits(self, pair: Pair) -> None:
        """Raise ContextTooLongError now if ``pair`` cannot be judged (before any generation)."""
        self._prompt_tokens(self.prompt_messages(pair))

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        tokens = self.engine.chat_tokens(messages)
        available = self.engine.max_context()
        if len(tokens) + VERDICT_ROOM > available:
            raise ContextTooLongError(
                f"the prompt is {len(tokens)} tokens, {len(tokens) + VERDICT_ROOM - available} more than "
                f"the model's context of {available} allows: shorten the texts or use a model with a longer context",
                needed=len(tokens) + VERDICT_ROOM,
                available=available,
            )
        return tokens

    def _judge_order(self, pair: Pair, order: str) -> OrderJudgment:
        messages = self.prompt_messages(pair, order)
        opened = _block_the_template_opens(self.template, pair)
        # The key holds what fixes the budget (max_tokens and the model's context, with the messages)
        # rather than the budget itself, so a cache hit needs no tokenizing at all.
        key = cache_key(
            {
                "model_sha256": self.model_sha256,
                "template": [self.template.id, self.template.sha256, getattr(self.engine, "chat_format", "gguf")],
                "messages": messages,
                "sampling": asdict(self.sampling),
                "max_tokens": self.max_tokens,
                "context": self.engine.max_context(),
                "parser": PARSER_VERSION,
            }
        )
        stored = self.cache.get(key) if self.cache is not None else None
        cached = stored is not None
        if stored is None:
            tokens = self._prompt_tokens(messages)
            # A long prompt leaves less room to reason; the verdict is forced when that runs out.
            budget = min(self.max_tokens, self.engine.max_context() - len(tokens) - VERDICT_ROOM)
            stored = {**self._generate(tokens, budget, opened), "tokens_in": len(tokens)}
            if self.cache is not None:
                self.cache.put(key, stored)
        parsed = parse_verdict(stored["completion"], reasoning=self.reasoning, opened=opened)
        position_verdict = parsed.verdict or max(stored["probabilities"], key=stored["probabilities"].get)
        p_position_a = stored["probabilities"]["A"]
        verdict = position_verdict if order == "ab" else {"A": "B", "B": "A"}[position_verdict]
        probability_a = p_position_a if order == "ab" else 1.0 - p_position_a
        return OrderJudgment(
            order=order,
            verdict=verdict,
            position_verdict=position_verdict,
            probability=probability_a if verdict == "A" else 1.0 - probability_a,
            probability_a=probability_a,
            forced=stored["forced"],
            rationale=parsed.rationale,
            tokens_in=stored["tokens_in"],
            tokens_out=stored["tokens_out"],
            seconds=0.0 if cached else stored["seconds"],
            stopped_by=stored["stopped_by"],
            cached=cached,
            completion=stored["completion"],
        )

    def _generate(self, tokens: list[int], budget: int, opened: str | None) -> dict[str, Any]:
        """Run the model on one rendered order; what is stored in the verdict cache."""
        started = time.perf_counter()
        text, generated, stopped_by, probabilities = "", [], "none", None
        if budget > 0:
            generation = self.engine.generate(
                tokens,
                max_tokens=budget,
                sampling=self.sampling,
                stop="</answer>",
                probe="<answer>[[",
                choices=CHOICES,
                # A </answer> inside a quote of a response, or inside the thinking, is not the end.
                accept_stop=functools.partial(stop_counts, reasoning=self.reasoning, opened=opened),
            )
            text, generated = generation.text, generation.tokens
            stopped_by, probabilities = generation.stopped_by, generation.choice_probabilities
        forced = parse_verdict(text, reasoning=self.reasoning, opened=opened).verdict is None
        # No verdict (budget spent, or the model stopped without one): close the reasoning or the
        # quote and ask for it. With a verdict but no reading of it, ask again after it for the confidence.
        appendix = forced_appendix(
            text, reasoning=self.reasoning, probabilities_read=probabilities is not None, opened=opened
        )
        if appendix is not None:
            probabilities = self.engine.choice_probabilities(
                tokens + generated + self.engine.tokenize(appendix), CHOICES
            )
            if forced:
                choice = max(probabilities, key=probabilities.__getitem__)
                text += f"{appendix}{choice}]]</answer>"
        return {
            "completion": text,
            "probabilities": probabilities,
            "forced": forced,
            "tokens_out": len(generated),
            "stopped_by": stopped_by,
            "seconds": time.perf_counter() - started,
        }
