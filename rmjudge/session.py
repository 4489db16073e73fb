"""From options to a working judge: resolve the model, open the verdict cache, build the engine.

Every command that judges (compare, batch, check, eval) describes its judge with one ``JudgeOptions``
and opens it with ``open_judge``; a library user may do the same, or build a ``Judge`` directly.
The options are checked when they are made, so a bad value fails before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rmjudge.decision import DEFAULT_RULE, DEFAULT_TIE_MARGIN, check_rule, check_samples
from rmjudge.engines import EngineOptions, Sampling
from rmjudge.errors import UsageError

if TYPE_CHECKING:
    from rmjudge.config import Settings
    from rmjudge.judge import Judge
    from rmjudge.progress import Progress

Warn = Callable[[str], None]


@dataclass(frozen=True)
class JudgeOptions:
    """What a judge is made of: the model and prompt, the budget and orders, sampling, the engine, and
    how it decides."""

    model: str | None = None  # an alias, hf://..., or a .gguf path; None: RMJUDGE_MODEL, else the default
    template: str | None = None  # a prompt family or a template directory; None: from the model
    max_tokens: int | None = None  # reasoning budget per order; None: the family's default; 0: verdict only
    order: str = "both"
    sampling: Sampling = field(default_factory=Sampling)
    engine: EngineOptions = field(default_factory=EngineOptions)  # its ``model`` is set by open_judge
    engine_name: str | None = None  # an engine registered under this name; None: http with endpoints, else llama
    no_cache: bool = False
    # How the winner is decided (rmjudge.decision); None: not given (a configuration's, else the default).
    decide: str | None = None
    tie_margin: float | None = None
    samples: int | None = None  # reasoning traces per order (above 1 needs a temperature above 0)
    criteria: str | None = None  # what "better" means, for every pair that brings none of its own

    def __post_init__(self) -> None:
        from rmjudge.judge import ORDERS

        if self.order not in ORDERS:
            raise UsageError(f"--order {self.order!r}: use both, ab or ba")
        if self.max_tokens is not None and self.max_tokens < 0:
            raise UsageError("--max-tokens must be 0 or more (0: no reasoning, verdict from probabilities)")
        check_rule(self.rule, self.margin)
        check_samples(self.sample_count, self.sampling.temperature)

    @property
    def rule(self) -> str:
        return DEFAULT_RULE if self.decide is None else self.decide

    @property
    def margin(self) -> float:
        return DEFAULT_TIE_MARGIN if self.tie_margin is None else self.tie_margin

    @property
    def sample_count(self) -> int:
        return 1 if self.samples is None else self.samples

    def over(self, settings: Settings) -> JudgeOptions:
        """These options, with the engine and decision settings they leave unset taken from a configuration
        file's (its temperature only where the command line left sampling greedy)."""
        engine = replace(
            self.engine,
            parallel=self.engine.parallel if self.engine.parallel is not None else settings.parallel,
            endpoints=self.engine.endpoints or tuple(settings.endpoints or ()),
            concurrency=self.engine.concurrency if self.engine.concurrency is not None else settings.concurrency,
        )
        sampling = self.sampling
        if sampling.temperature == 0 and settings.temperature:  # the command line left it at greedy
            sampling = replace(sampling, temperature=settings.temperature)
        return replace(
            self,
            engine=engine,
            sampling=sampling,
            decide=self.decide if self.decide is not None else settings.decide,
            tie_margin=self.tie_margin if self.tie_margin is not None else settings.tie_margin,
            samples=self.samples if self.samples is not None else settings.samples,
        )


def open_judge(options: JudgeOptions, *, warn: Warn | None = None, progress: Progress | None = None) -> Judge:
    """The judge ``options`` describe, with the shared verdict cache unless ``no_cache``.

    The model is pulled on first use (the download reported to ``progress``); ``warn`` hears where it
    came from when that is not where the registry said, and about a model larger than the memory available.
    """
    from rmjudge.cache import VerdictCache
    from rmjudge.engines import build_engine
    from rmjudge.judge import Judge

    if options.template:
        from rmjudge.prompts import load_template

        load_template(options.template)  # a broken or misspelt template costs no model load
    engine_options = options.engine
    if not engine_options.endpoints:
        # A local model: pulled on first use, and said where it came from when not the registry's repository.
        from rmjudge.models import memory_warning, resolve_model

        resolved = resolve_model(options.model, progress=progress)
        for message in (resolved.note, memory_warning(resolved.path)):
            if warn is not None and message:
                warn(message)
        engine_options = replace(engine_options, model=resolved)
    cache = None if options.no_cache else VerdictCache()
    return Judge(
        build_engine(engine_options, options.engine_name),
        template=options.template,
        max_tokens=options.max_tokens,
        order=options.order,
        sampling=options.sampling,
        cache=cache,
        decide=options.rule,
        tie_margin=options.margin,
        samples=options.sample_count,
        criteria=options.criteria,
    )
