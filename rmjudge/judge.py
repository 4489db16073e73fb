"""Pairs in, judgments out, in three phases, many pairs at once.

- plan: render each order of a pair, look it up in the verdict cache (before any tokenizing), format
  it and check that it fits the context. A pair's own error (too long, ...) is its outcome, not the run's.
- run: the engine works on every pending order together: ``Engine.run`` on a window of jobs, several
  per engine slot, read lazily from the input.
- finish: parse each completion and decide the winner from every order's reading (``rmjudge.decision``:
  the rule, and with ``samples`` several traces per order), with the calibrated confidence where a
  calibration of this model and template is stored (``rmjudge eval --calibrate``). A forced verdict (no
  answer within the budget) is read by the engine itself through the answer format's appendix, batched
  with the rest.

Engines are built outside the judge (``rmjudge.engines.build_engine``); nothing here knows which one runs.
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from rmjudge import __version__
from rmjudge import calibration as calibrations
from rmjudge.cache import VerdictCache, cache_key
from rmjudge.decision import (
    DEFAULT_RULE,
    DEFAULT_TIE_MARGIN,
    Trace,
    check_rule,
    check_samples,
    confidence_of,
    decide,
)
from rmjudge.engines import AnswerFormat, Engine, EngineOptions, Job, Output, Prompt, Sampling, build_engine
from rmjudge.errors import ContextTooLongError, InputError, RmjudgeError, UsageError
from rmjudge.judge_orders import (
    OrderPlan,
    PairPlan,
    answer_format,
    block_the_template_opens,
    checked_orders,
    order_judgment,
    stored_output,
    template_messages,
)
from rmjudge.judgment import Judgment, OrderJudgment  # noqa: F401 (OrderJudgment: still importable from here)
from rmjudge.models import ResolvedModel
from rmjudge.prefetch import NoItem, Prefetch
from rmjudge.prompts import Pair, detect_family, load_template
from rmjudge.verdict import PARSER_VERSION

if TYPE_CHECKING:
    from rmjudge.rank import Ranking

ORDERS = {"both": ("ab", "ba"), "ab": ("ab",), "ba": ("ba",)}
# Per family: the reasoning family thinks at length before it answers.
DEFAULT_MAX_TOKENS = {"instruct": 2048, "reasoning": 4096}
VERDICT_ROOM = 32  # tokens kept free for a forced verdict
# Jobs handed to the engine per slot at once: a run ends with slots idling while its last jobs finish,
# so a larger window wastes less; each pair in it is only a few kilobytes of text.
JOBS_PER_SLOT = 8
# With work in hand, how long to wait for the next input item before running what there is: long beside
# reading a line of a file, short beside judging one (a pipe fed a line at a time is judged as it comes).
INPUT_WAIT = 0.2
# Errors that are one pair's own: judge_many yields them in the pair's place. Any other error stops the run.
PAIR_ERRORS = (ContextTooLongError, InputError)

# A pair, a pair with its own orders, or an error the caller already has for this place in the
# stream (a line it could not read): that passes through in its place, as soon as all before it are done.
Request = Pair | tuple[Pair, Sequence[str]] | RmjudgeError
Item = TypeVar("Item")


def load_engine(
    model: str | Path | ResolvedModel | None,
    *,
    gpu_layers: int | None = None,
    threads: int | None = None,
    parallel: int | None = None,
    debug: bool = False,
) -> Engine:
    """The engine for a local GGUF (``build_engine``'s default, llama.cpp) on ``model``: an alias or hf://
    spec is pulled on first use, a ResolvedModel is used as it is."""
    from rmjudge.models import resolve_model

    resolved = model if isinstance(model, ResolvedModel) else resolve_model(str(model) if model else None)
    options = EngineOptions(model=resolved, gpu_layers=gpu_layers, threads=threads, parallel=parallel, debug=debug)
    return build_engine(options)


class Judge:
    """Judge pairs with one engine, loaded once.

    >>> judge = Judge(model="path/to/model.gguf")            # doctest: +SKIP
    >>> judge.compare("What is 2+2?", "4", "5").winner        # doctest: +SKIP
    'A'

    ``engine`` is an engine built outside (``rmjudge.engines.build_engine``); without one, the llama
    engine is built on ``model`` (a path, an alias or hf://...; as in rmjudge 0.1, a model may also
    be given in ``engine``'s place). ``gpu_layers``, ``threads``, ``parallel`` and ``debug`` only
    apply to that built engine.

    How the winner is decided: ``decide`` ("probability" or "agreement") and ``tie_margin`` (see
    ``rmjudge.decision``); ``samples`` traces per order, with seeds ``sampling.seed + i`` (above 1 needs
    a temperature above 0). ``criteria``: what "better" means, for every pair that brings none of its
    own. ``calibration``: "stored" (the default) applies the fit ``rmjudge eval --calibrate`` stored
    for this model and template, if any; None applies none; or a ``Calibration`` to apply.
    """

    def __init__(
        self,
        engine: Engine | str | Path | ResolvedModel | None = None,
        *,
        model: str | Path | ResolvedModel | None = None,
        template: str | None = None,
        max_tokens: int | None = None,
        order: str = "both",
        sampling: Sampling | None = None,
        cache: VerdictCache | None = None,
        gpu_layers: int | None = None,
        threads: int | None = None,
        parallel: int | None = None,
        debug: bool = False,
        decide: str = DEFAULT_RULE,
        tie_margin: float = DEFAULT_TIE_MARGIN,
        samples: int = 1,
        criteria: str | None = None,
        calibration: calibrations.Calibration | Literal["stored"] | None = "stored",
    ) -> None:
        if order not in ORDERS:
            raise UsageError(f"--order {order!r}: use both, ab or ba")
        if max_tokens is not None and max_tokens < 0:
            raise UsageError("--max-tokens must be 0 or more (0: no reasoning, verdict from probabilities)")
        check_rule(decide, tie_margin)
        check_samples(samples, (sampling or Sampling()).temperature)
        # A template named here is checked before any model is read: a typo costs no load.
        named_template = load_template(template) if template else None
        if engine is None or isinstance(engine, (str, Path, ResolvedModel)):
            if engine is not None and model is not None:
                raise UsageError("give the model once: Judge(model=...) or Judge(engine)")
            engine = load_engine(
                engine if engine is not None else model,
                gpu_layers=gpu_layers, threads=threads, parallel=parallel, debug=debug,
            )  # fmt: skip
        self.engine: Engine = engine
        self.order = order
        self.sampling = sampling or Sampling()
        self.cache = cache
        self.template = named_template or load_template(detect_family(dict(engine.info.metadata)))
        self.max_tokens = DEFAULT_MAX_TOKENS[self.template.family] if max_tokens is None else max_tokens
        self._answers: dict[str | None, AnswerFormat] = {}  # by the block the template leaves open
        self._identity: dict[str, Any] | None = None
        self.rule = decide
        self.tie_margin = tie_margin
        self.samples = samples
        self.criteria = criteria
        self._calibration = calibration

    @classmethod
    def from_options(cls, options: EngineOptions, engine_name: str | None = None, **settings: Any) -> Judge:
        """A judge on the engine ``options`` describe (``build_engine``); ``settings`` as for ``Judge``."""
        return cls(build_engine(options, engine_name), **settings)

    def with_max_tokens(self, max_tokens: int) -> Judge:
        """The same judge, sharing its loaded engine, template and cache, with another reasoning budget."""
        other = copy.copy(self)
        other.max_tokens = max_tokens
        return other

    @property
    def reasoning(self) -> bool:
        return self.template.family == "reasoning"

    @property
    def calibration(self) -> calibrations.Calibration | None:
        """The calibration applied to the confidence: the stored one is looked up once, when first needed."""
        if self._calibration == "stored":
            self._calibration = calibrations.load(*calibrations.key_for(self.meta()))
        return self._calibration

    @property
    def model_identity(self) -> dict[str, Any]:
        """The engine's model identity (its ``id`` keys the verdict cache); asked once, when first needed."""
        if self._identity is None:
            self._identity = dict(self.engine.identity())
        return self._identity

    def meta(self) -> dict[str, Any]:
        info = self.engine.info
        return {
            "model": dict(self.model_identity),
            "template": {
                "id": self.template.id,
                "family": self.template.family,
                "sha256": self.template.sha256,
                "chat_format": info.chat_format,
            },
            "sampling": {**asdict(self.sampling), "max_tokens": self.max_tokens},
            "decision": {"rule": self.rule, "tie_margin": self.tie_margin, "samples": self.samples},
            "versions": {"rmjudge": __version__, **info.versions},
        }

    def prompt_messages(self, pair: Pair, order: str = "ab") -> list[dict[str, str]]:
        """The exact chat messages the model sees for ``pair`` in ``order`` (with the judge's criteria
        when the pair brings none)."""
        if pair.criteria is None and self.criteria is not None:
            pair = replace(pair, criteria=self.criteria)
        return template_messages(self.template, pair if order == "ab" else pair.swapped())

    def compare(self, question: str | None, a: str, b: str) -> Judgment:
        """Which of ``a`` and ``b`` answers ``question`` better (None: the default task statement)."""
        return self.judge(Pair(a=a, b=b, question=question))

    def rank(self, question: str | None, candidates: Sequence[str], **options: Any) -> Ranking:
        """Order ``candidates`` from best to worst with scores and intervals: ``rmjudge.rank.rank``."""
        from rmjudge.rank import rank

        return rank(self, question, candidates, **options)

    def rewards(
        self, question: str | None, completions: Sequence[str], *, reference: str | None = None, **options: Any
    ) -> list[float]:
        """A reward in [0, 1] per completion (P(it beats ``reference``)): ``rmjudge.rewards.rewards``."""
        from rmjudge.rewards import rewards

        return rewards(self, question, completions, reference=reference, **options)

    def judge(self, pair: Pair, orders: Sequence[str] | None = None) -> Judgment:
        """Judge ``pair`` in each order (default: the judge's ``order``) and combine; raises the pair's error."""
        [outcome] = self.judge_many([pair], orders)  # to the end: the engine's run ends as it should
        if isinstance(outcome, RmjudgeError):
            raise outcome
        return outcome

    def check_fits(self, pair: Pair) -> None:
        """Raise ContextTooLongError now if ``pair`` cannot be judged (before any generation)."""
        self._room(self.engine.format_prompt(self.prompt_messages(pair)))

    # -- many pairs ---------------------------------------------------------------------------------

    def judge_many(
        self, pairs: Iterable[Request], orders: Sequence[str] | None = None
    ) -> Generator[Judgment | RmjudgeError, None, None]:
        """Judge every pair, yielding in input order its Judgment or its own error (too long for the
        context, ...), each as soon as it and every pair before it are done.

        ``orders``: the orders each pair is judged in (default: the judge's ``order``); a request
        ``(pair, orders)`` gives one pair its own. The input is read lazily, a window of pairs ahead
        of the engine, and never waited on while there is work (``rmjudge.prefetch``: a pipe fed a line
        at a time is judged as it comes). An error the input raises is raised once every pair before
        it is handed back. Errors that stop the whole run (the model cannot load, Ctrl-C) are raised.
        """
        default = ORDERS[self.order] if orders is None else checked_orders(orders)
        window = max(1, self.engine.info.parallel) * JOBS_PER_SLOT
        planned: deque[PairPlan] = deque()  # pairs read and not yet handed back, in input order
        exhausted = False
        with Prefetch(pairs, direct=isinstance(pairs, Sequence)) as source:
            while not exhausted or planned:
                pending: list[tuple[OrderPlan, Job]] = []
                while not exhausted and len(pending) < window and len(planned) < window:
                    # With nothing in hand, wait for the input as long as it takes; with work, not long.
                    request = source.take(INPUT_WAIT if planned else None)
                    exhausted = request is NoItem.ENDED
                    if isinstance(request, NoItem):
                        break
                    plan = self._plan(request, default)
                    planned.append(plan)
                    pending.extend((o, o.job) for o in plan.orders if o.job is not None)
                    yield from self._ready(planned)  # cache hits and errors need no engine
                if pending:
                    yield from self._run(pending, planned)
        if source.failure is not None:
            raise source.failure

    def _ready(self, planned: deque[PairPlan]) -> Iterator[Judgment | RmjudgeError]:
        while planned and planned[0].done:
            yield self._finish(planned.popleft())

    def _run(
        self, pending: list[tuple[OrderPlan, Job]], planned: deque[PairPlan]
    ) -> Iterator[Judgment | RmjudgeError]:
        """Every pending job in one engine run; each pair handed back as soon as it and those before it are done."""
        outputs = self.engine.run([job for _, job in pending])
        try:
            for index, output in outputs:
                self._store(pending[index][0], output)
                yield from self._ready(planned)
        finally:
            # Stopped early (Ctrl-C, the caller stopped reading): the engine stops its work in flight.
            close = getattr(outputs, "close", None)  # generators have it; a plain iterator holds nothing to stop
            if close is not None:
                close()
        if planned:  # an engine must give every job's output: without this, the pairs would wait forever
            raise RuntimeError("the engine ended its run without the output of every job")

    # -- plan ------------------------------------------------------------------------------------

    def _plan(self, request: Request, default: tuple[str, ...]) -> PairPlan:
        if isinstance(request, RmjudgeError):
            return PairPlan([], request)
        pair, orders = (request, default) if isinstance(request, Pair) else (request[0], checked_orders(request[1]))
        opened = block_the_template_opens(self.template, pair)
        try:
            return PairPlan([plan for order in orders for plan in self._plan_order(pair, order, opened)])
        except PAIR_ERRORS as error:
            return PairPlan([], error)  # none of this pair's orders runs

    def _plan_order(self, pair: Pair, order: str, opened: str | None) -> list[OrderPlan]:
        """Each sample of one order: its cache hit, or its job (the prompt formatted once for all)."""
        messages = self.prompt_messages(pair, order)
        plans: list[OrderPlan] = []
        prompt: Prompt | None = None
        for sample in range(self.samples):
            # Sample i draws with seed + i: its own trace, and its own cache entry.
            sampling = replace(self.sampling, seed=self.sampling.seed + sample) if sample else self.sampling
            key = self._key(messages, sampling) if self.cache is not None else None
            stored = self.cache.get(key) if self.cache is not None and key is not None else None
            if stored is not None:
                plans.append(OrderPlan(order, sample, opened, key, stored, cached=True, job=None))
                continue
            prompt = prompt or self.engine.format_prompt(messages)
            # A long prompt leaves less room to reason; the verdict is forced when that runs out.
            budget = min(self.max_tokens, self._room(prompt))
            if opened not in self._answers:
                self._answers[opened] = answer_format(self.reasoning, opened)
            job = Job(prompt, budget, sampling, self._answers[opened])
            plans.append(OrderPlan(order, sample, opened, key, None, cached=False, job=job))
        return plans

    def _key(self, messages: list[dict[str, str]], sampling: Sampling) -> str:
        # The key holds what fixes the budget (max_tokens and the model's context, with the messages)
        # rather than the budget itself, so a cache hit needs no tokenizing at all.
        info = self.engine.info
        return cache_key(
            {
                "model": self.model_identity["id"],
                "template": [self.template.id, self.template.sha256, info.chat_format],
                "messages": messages,
                "sampling": asdict(sampling),
                "max_tokens": self.max_tokens,
                "context": info.max_context,
                "parser": PARSER_VERSION,
            }
        )

    def _room(self, prompt: Prompt) -> int:
        """Tokens left to reason in after ``prompt``; ContextTooLongError when there are none."""
        available = self.engine.info.max_context
        needed = len(prompt.tokens) + VERDICT_ROOM
        if needed > available:
            raise ContextTooLongError(
                f"the prompt is {len(prompt.tokens)} tokens, {needed - available} more than the model's context "
                f"of {available} allows: shorten the texts or use a model with a longer context",
                needed=needed,
                available=available,
            )
        return available - needed

    # -- finish ----------------------------------------------------------------------------------

    def _store(self, plan: OrderPlan, output: Output) -> None:
        """An order's output as the verdict cache holds it, stored at once (an interrupted run keeps it)."""
        plan.stored = stored_output(output, reasoning=self.reasoning, opened=plan.opened)
        if self.cache is not None and plan.key is not None:
            self.cache.put(plan.key, plan.stored)

    def _finish(self, plan: PairPlan) -> Judgment | RmjudgeError:
        if plan.error is not None:
            return plan.error
        results = [order_judgment(o, reasoning=self.reasoning) for o in plan.orders]
        decision = decide([Trace(r.order, r.verdict, r.probability_a) for r in results], self.rule, self.tie_margin)
        confidence, raw = decision.confidence, None
        if self.calibration is not None:
            calibrated_a = self.calibration.probability_a([r.probability_a for r in results])
            confidence, raw = confidence_of(decision.winner, calibrated_a), confidence
        return Judgment(
            winner=decision.winner,
            confidence=confidence,
            consistent=decision.consistent,
            probability_a=decision.probability_a,
            orders=results,
            meta=self.meta(),
            votes=decision.votes,
            confidence_raw=raw,
        )


def judge_along(
    items: Iterable[Item],
    request: Callable[[Item], Request | None],
    judge: Callable[[], Judge],
) -> Iterator[tuple[Item, Judgment | RmjudgeError | None]]:
    """Each item with its outcome, in input order: the items ``request`` turns into a pair go through
    one ``judge_many`` stream; the others (None: nothing to judge) pass through in their place, None
    as their outcome, as soon as every item before them is done (never held back waiting for input).

    ``judge`` is called once, when the first item to judge comes: a run with nothing to judge loads no model.
    """
    source = iter(items)
    for item in source:
        wanted = request(item)
        if wanted is None:
            yield item, None
            continue
        rest = ((later, request(later)) for later in source)
        yield from _judged(itertools.chain([(item, wanted)], rest), judge(), direct=isinstance(items, Sequence))
        return


class _PassThrough(RmjudgeError):
    """Marks an item with nothing to judge inside a judge_many stream."""


_PASS = _PassThrough("nothing to judge")


def _judged(
    requested: Iterable[tuple[Item, Request | None]], judge: Judge, *, direct: bool
) -> Iterator[tuple[Item, Judgment | RmjudgeError | None]]:
    # Filled where the requests are read (judge_many's reading thread, unless ``direct``), before each
    # request is handed over, so an item is always here when its outcome comes.
    items: deque[Item] = deque()

    def requests() -> Iterator[Request]:
        for item, wanted in requested:
            items.append(item)
            yield _PASS if wanted is None else wanted

    # Items from a sequence are all at hand: their requests go as a list, read with no thread.
    outcomes = judge.judge_many(list(requests()) if direct else requests())
    try:
        for outcome in outcomes:
            yield items.popleft(), None if outcome is _PASS else outcome
    finally:
        outcomes.close()  # the consumer stopped early (an error, --strict): the engine stops too
