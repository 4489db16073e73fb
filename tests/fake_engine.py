"""A scripted Engine for orchestration tests: the protocol of rmjudge/engines/base.py, no model.

It behaves like a continuous-batching engine without the arithmetic: ``info.parallel`` slots, each
decode step advances every active job by one token, a finished job's slot takes the next job at once,
so jobs finish out of order exactly as a real engine's do. Tokens are characters (code points), so the
judge's token arithmetic is real. What the "model" writes comes from ``script(prompt_text)``; the
engine honours the job's ``AnswerFormat`` as a real engine does: it stops where ``stop`` ends the text
and ``accept_stop`` agrees, reads the choices where the text ends with ``probe``, and when generation
ends evaluates ``appendix(text, probabilities_read)`` to read a forced verdict.

Never for model behaviour: every feature that runs a model also has a test on a real GGUF.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmjudge.engines.base import EngineInfo, Job, Output, Prompt

DEFAULT_REPLY = "<type>Chat</type>\n<eval>A is better.</eval>\n<answer>[[A]]</answer>"


@dataclass(frozen=True)
class Reply:
    """A scripted reply with more than its text."""

    text: str
    steps: int | None = None  # decode steps the job occupies its slot (default: one per generated token)
    stopped_by: str | None = None  # overrides how generation ended ("eos", "length", ...)
    probability_a: float | None = None  # overrides the engine's reading for this job


Script = Callable[[str], "str | Reply"]
Probability = float | Callable[[str], float]


@dataclass
class _Active:
    index: int
    job: Job
    reply: Reply
    started: float
    text: str = ""
    steps_left: int = 0
    probabilities: dict[str, float] | None = None
    stopped_by: str | None = None


@dataclass
class FakeEngine:
    """A scripted engine. ``probability_a(text)`` is P(Chatbot A) read after ``text`` (the prompt
    and what was generated up to the reading); ``raise_when(engine)`` is asked before every decode
    step and raises what it returns (an error, or KeyboardInterrupt as a Ctrl-C would)."""

    path: Path | None = None  # a stand-in model file: the identity is its sha256, as a GGUF's is
    script: Script = lambda prompt: DEFAULT_REPLY
    probability_a: Probability = 0.75
    context: int = 100_000
    parallel: int = 1
    metadata: Mapping[str, object] = field(default_factory=lambda: {"general.name": "fake"})
    chat_format: str = "plain"
    model_name: str = "fake"
    step_delay: float = 0.0  # seconds slept per decode step (for tests that need time to pass)
    raise_when: Callable[[FakeEngine], BaseException | None] | None = None
    # What happened, for the tests to assert on.
    generate_calls: list[str] = field(default_factory=list)  # prompt text of each job that generated
    probability_calls: list[str] = field(default_factory=list)  # text read after an appendix
    format_calls: int = 0
    identity_calls: int = 0
    runs: list[int] = field(default_factory=list)  # jobs per run() call
    finished: int = 0  # jobs finished over all runs
    steps: int = 0  # decode steps over all runs
    most_active: int = 0  # the most jobs decoded in one step
    abandoned: int = 0  # jobs never finished because a run was stopped (an error, Ctrl-C, closed early)

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path.write_bytes(b"GGUF fake model")
        self.info = EngineInfo(
            name=self.model_name,
            metadata=dict(self.metadata),
            chat_format=self.chat_format,
            max_context=self.context,
            parallel=self.parallel,
            versions={"fake_engine": "1"},
        )

    # -- the protocol ------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        self.identity_calls += 1
        if self.path is not None:  # read now: a test may write other "weights" after building the engine
            digest, file = hashlib.sha256(self.path.read_bytes()).hexdigest(), self.path.name
        else:
            digest, file = (
                hashlib.sha256(f"fake model {self.model_name}".encode()).hexdigest(),
                f"{self.model_name}.gguf",
            )
        return {"id": f"sha256:{digest}", "file": file, "sha256": digest, "gguf_name": self.model_name}

    def format_prompt(self, messages: Sequence[Mapping[str, str]]) -> Prompt:
        self.format_calls += 1
        text = "\n".join(f"<{m['role']}>{m['content']}" for m in messages) + "\n<assistant>"
        return Prompt(text=text, tokens=tuple(ord(c) for c in text))

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Output]]:
        self.runs.append(len(jobs))
        waiting = deque(enumerate(jobs))
        active: list[_Active] = []
        try:
            while waiting or active:
                while waiting and len(active) < self.parallel:
                    active.append(self._start(*waiting.popleft()))
                if self.raise_when is not None and (error := self.raise_when(self)) is not None:
                    raise error
                if self.step_delay:
                    time.sleep(self.step_delay)
                self.steps += 1
                self.most_active = max(self.most_active, len(active))
                for sequence in list(active):
                    if self._step(sequence):
                        active.remove(sequence)
                        self.finished += 1
                        yield sequence.index, self._finish(sequence)
        finally:
            self.abandoned += len(waiting) + len(active)  # jobs left when the run stopped early

    # -- the simulation ------------------------------------------------------------------------

    def _start(self, index: int, job: Job) -> _Active:
        reply = Reply(text="") if job.max_tokens == 0 else self._reply(job.prompt.text)
        if job.max_tokens > 0:
            self.generate_calls.append(job.prompt.text)
        generated = reply.text[: job.max_tokens]
        steps = reply.steps if reply.steps is not None else len(generated)
        return _Active(index, job, reply, time.perf_counter(), steps_left=max(steps, 1))

    def _reply(self, prompt: str) -> Reply:
        reply = self.script(prompt)
        return reply if isinstance(reply, Reply) else Reply(text=reply)

    def _step(self, sequence: _Active) -> bool:
        """One decode step of one sequence; True when it is done."""
        job, answer = sequence.job, sequence.job.answer
        if sequence.stopped_by is None and job.max_tokens > 0:
            if len(sequence.text) >= min(len(sequence.reply.text), job.max_tokens):
                sequence.stopped_by = "length" if len(sequence.text) >= job.max_tokens else "eos"
            else:
                sequence.text += sequence.reply.text[len(sequence.text)]
                if _ends_with_probe(sequence.text, answer.probe):
                    sequence.probabilities = self._read(sequence, job.prompt.text + sequence.text)
                if sequence.text.endswith(answer.stop) and answer.accept_stop(sequence.text):
                    sequence.stopped_by = "stop"
                elif len(sequence.text) >= job.max_tokens:
                    sequence.stopped_by = "length"
        sequence.steps_left -= 1
        return sequence.steps_left <= 0 and (sequence.stopped_by is not None or job.max_tokens == 0)

    def _read(self, sequence: _Active, text: str) -> dict[str, float]:
        choices = sequence.job.answer.choices
        p = sequence.reply.probability_a
        if p is None:
            p = self.probability_a(text) if callable(self.probability_a) else self.probability_a
        return {choices[0]: p, choices[1]: 1.0 - p}

    def _finish(self, sequence: _Active) -> Output:
        job = sequence.job
        text = sequence.text
        stopped_by = "none" if job.max_tokens == 0 else sequence.reply.stopped_by or sequence.stopped_by or "length"
        appendix = job.answer.appendix(text, sequence.probabilities is not None)
        probabilities = sequence.probabilities
        if appendix is not None:
            read_after = job.prompt.text + text + appendix
            self.probability_calls.append(read_after)
            probabilities = self._read(sequence, read_after)
        assert probabilities is not None, "the answer format gave no appendix for a text without a reading"
        return Output(
            text=text,
            tokens=tuple(ord(c) for c in text),
            stopped_by=stopped_by,
            appendix=appendix,
            choice_probabilities=probabilities,
            prompt_tokens=len(job.prompt.tokens),
            evaluated_prompt_tokens=len(job.prompt.tokens),
            seconds=time.perf_counter() - sequence.started,
        )


def _ends_with_probe(text: str, probe: str) -> bool:
    # As the llama engine reads it: whitespace allowed before each bracket and at the end.
    pattern = re.escape(probe).replace(r"\[", r"\s*\[") + r"\s*$"
    return re.search(pattern, text[-(len(probe) + 8) :]) is not None
