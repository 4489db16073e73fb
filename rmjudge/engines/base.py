"""The engine seam: what the judge asks of a backend, and nothing more.

An engine does two things: it turns chat messages into a ``Prompt`` (with the model's own chat
template, the judged texts never becoming control tokens), and it ``run``s many jobs at once,
yielding each job's ``Output`` as soon as that job is done. Everything else (RM-R1's prompts,
parsing, both orders, the verdict cache, combining) is the judge's. Engines are built outside the
judge (``rmjudge.engines.build_engine``), so a new backend slots in without an edit to ``judge.py``.

How an answer ends and is read is the judge's knowledge, handed to the engine as an
``AnswerFormat`` of plain callables, so an engine needs no knowledge of RM-R1's markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rmjudge.errors import UsageError


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters. RM-R1's evaluation decodes greedily (temperature 0)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Written as "not (what is valid)": nan, for which every comparison is false, is refused too.
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise UsageError(f"--temperature {self.temperature}: give a number, 0 or more (0 decodes greedily)")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p {self.top_p}: give a number above 0 and at most 1")


@dataclass(frozen=True)
class AnswerFormat:
    """How a judgment ends and where its verdict is read; the judge defines it, the engine calls it.

    - Generation may stop when the text ends with ``stop`` and ``accept_stop(text)`` agrees (a
      ``</answer>`` inside a quote the model is writing does not count).
    - Where the generated text ends with ``probe`` (allowing whitespace), the engine reads the
      next-token probabilities of ``choices``, normalised over them.
    - When generation ends, ``appendix(text)`` says what to append to read a verdict (a forced
      verdict), or None when the text already holds one whose probabilities were read. The engine
      evaluates the appendix as markup (special tokens allowed) and reads the choices after it.
    """

    stop: str
    probe: str
    choices: tuple[str, ...]
    accept_stop: Callable[[str], bool]
    appendix: Callable[[str, bool], str | None]  # (generated text, probabilities read?) -> appendix or None


@dataclass(frozen=True)
class Prompt:
    """A formatted prompt: the chat template's markup around the judged texts."""

    text: str
    tokens: tuple[int, ...]  # the judged texts are never special tokens in here


@dataclass(frozen=True)
class Job:
    """One sequence to run: a rendered order of a pair (or one sample of it)."""

    prompt: Prompt
    max_tokens: int  # 0: generate nothing, only read the verdict after the appendix
    sampling: Sampling
    answer: AnswerFormat


@dataclass(frozen=True)
class Output:
    text: str  # the generated text, without the appendix
    tokens: tuple[int, ...]  # the generated token ids
    stopped_by: str  # "stop", "eos", "length" (budget spent) or "none" (budget 0)
    appendix: str | None  # what was appended to read a forced verdict, None when not forced
    choice_probabilities: dict[str, float]  # P(choice) at the verdict token, normalised over the choices
    prompt_tokens: int
    evaluated_prompt_tokens: int  # prompt tokens the engine had to evaluate (the rest came from a shared prefix)
    seconds: float  # wall time from the job's start to its end (overlaps other jobs' time)
    prompt_seconds: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)  # engine-specific figures (endpoint, drafts, ...)


@dataclass(frozen=True)
class EngineInfo:
    """Static facts about an engine and its model."""

    name: str | None  # the model's display name: GGUF general.name, or the served model id
    metadata: Mapping[str, object]  # the prompt-family hint: GGUF metadata, or what a server reports
    chat_format: str  # "gguf" (the model's own template), "plain" (no template), "server" (applied by the server)
    max_context: int  # tokens a prompt plus its generation may take
    parallel: int  # sequences the engine runs at once: the judge keeps at least this many jobs in flight
    versions: Mapping[str, str]  # library/server versions recorded in every judgment


@dataclass(frozen=True)
class EndpointFigures:
    """What one server of an engine that spreads its jobs over several has done so far in this process."""

    endpoint: str  # as the user named it
    requests: int  # requests it answered
    tokens: int  # tokens it generated for them (as the server counts them, else as it returned them)
    in_flight: int
    set_aside: bool  # resting after failures
    last_error: str  # the last failure ("" when none)


def endpoint_figures(engine: object) -> list[EndpointFigures]:
    """Per server, for an engine that offers ``endpoint_figures()`` (the http engine); [] for one that does
    not. Not part of ``Engine``: a one-model engine has nothing to report, and need not say so."""
    figures = getattr(engine, "endpoint_figures", None)
    return list(figures()) if callable(figures) else []


class Engine(Protocol):
    """What the judge needs from a backend. ``run`` is the one method that does the work."""

    info: EngineInfo

    def identity(self) -> dict[str, Any]:
        """The model as the output's ``model`` object shows it. Its ``id`` key enters the verdict cache
        key: it must differ whenever the weights may (a file's sha256; a server's model id plus the
        revision or file it reports). May be costly the first time (hashing a file): called lazily."""
        ...

    def format_prompt(self, messages: Sequence[Mapping[str, str]]) -> Prompt:
        """Format messages with the model's chat template, ready for the reply to be generated."""
        ...

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Output]]:
        """Run every job, yielding ``(index into jobs, output)`` as each finishes, in any order.

        Raises ``RmjudgeError`` subclasses for failures that stop the run (a model that cannot be
        loaded, no endpoint left). Jobs must fit ``info.max_context`` (the judge checks first).
        """
        ...
