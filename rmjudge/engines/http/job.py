"""One job on the servers: generate (continued past a ``</answer>`` that does not count), then read
the verdict's probabilities, with as many completion requests as that takes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from rmjudge.engines.base import Job, Output, Sampling
from rmjudge.engines.http import completions
from rmjudge.engines.http.client import Endpoint
from rmjudge.engines.http.completions import Completion

if TYPE_CHECKING:
    from rmjudge.engines.http.engine import HttpEngine


class JobRun:
    """One job's requests: generate (continuing past stops that do not count), then read the verdict."""

    def __init__(self, engine: HttpEngine, job: Job, stopped: Callable[[], bool]) -> None:
        self.engine = engine
        self.job = job
        self.stopped = stopped
        self.facts = engine.facts
        self.text = ""
        self.ids: list[int] | None = [] if self.facts.takes_token_ids else None
        self.probabilities: dict[str, float] | None = None
        self.endpoint: Endpoint | None = None
        self.requests = 0
        self.generated = 0
        self.evaluated: int | None = None
        self.prompt_seconds = 0.0
        self.unread = False  # the verdict's probabilities could not be read: an even split stands for them

    def run(self) -> Output:
        started = time.perf_counter()
        job = self.job
        stopped_by = "none" if job.max_tokens <= 0 else "length"
        while self.generated < job.max_tokens:
            completion = self._request(self._prompt(""), job.max_tokens - self.generated, job.answer.stop, job.sampling)
            if completion.finish == "stop":
                completion = replace(completion, finish=self._stop_or_end(completion))
            self._take(completion)
            if completion.finish != "word":
                stopped_by = completion.finish
                break
            self.text += job.answer.stop
            if job.answer.accept_stop(self.text):
                stopped_by = "stop"
                break
            # A </answer> that does not count (inside a quote): generation goes on after it.
        if self.ids is None and job.max_tokens > 0:
            self._read_probe()
        appendix = job.answer.appendix(self.text, self.probabilities is not None)
        if appendix is not None:
            self._read_verdict(appendix)
        tokens = self.ids if self.ids is not None else self.engine.tokenize(self.text, special=False)
        return Output(
            text=self.text,
            tokens=tuple(tokens),
            stopped_by=stopped_by,
            appendix=appendix,
            choice_probabilities=self.probabilities or {},
            prompt_tokens=len(job.prompt.tokens),
            evaluated_prompt_tokens=self.evaluated if self.evaluated is not None else len(job.prompt.tokens),
            seconds=time.perf_counter() - started,
            prompt_seconds=self.prompt_seconds,
            extra={
                "endpoint": self.endpoint.url if self.endpoint else None,
                "requests": self.requests,
                **({"verdict_unread": True} if self.unread else {}),
            },
        )

    def _prompt(self, appendix: str) -> list[int] | str:
        """The prompt, what was generated so far, and an appendix: as ids where the server takes them."""
        prompt = self.job.prompt
        if self.ids is None:
            return self.engine.server_text(prompt.text) + self.text + appendix
        extra = self.engine.tokenize(appendix, special=True) if appendix else []
        return [*prompt.tokens, *self.ids, *extra]

    def _request(
        self, prompt: Sequence[int] | str, max_tokens: int, stop: str | None, sampling: Sampling
    ) -> Completion:
        self.endpoint, completion = self.engine.complete(
            prompt, max_tokens, stop, sampling, self.endpoint, self.stopped
        )
        self.requests += 1
        if self.evaluated is None:
            self.evaluated = completion.evaluated_prompt_tokens
            self.prompt_seconds = completion.prompt_seconds
        return completion

    def _take(self, completion: Completion) -> None:
        """Add a completion's text and tokens; read the choices where the text so far ends with the probe."""
        answer = self.job.answer
        before = self.text
        for position in completion.positions:
            if completions.ends_with_probe(before, answer.probe):
                probabilities = self.engine.choice_probabilities(position.top, answer.choices)
                if probabilities is not None:
                    self.probabilities = probabilities
            before += position.text
        self.text += completion.text
        if self.ids is not None:
            if completion.token_ids is None:  # a server that does not return them: the text's own tokens
                completion_ids = self.engine.tokenize(
                    completion.text + (answer.stop if completion.finish == "word" else ""), special=False
                )
            else:
                completion_ids = completion.token_ids
            self.ids.extend(completion_ids)
            self.generated += max(1, len(completion_ids))
        else:
            self.generated += max(1, completion.generated_tokens or len(completion.positions))

    def _stop_or_end(self, completion: Completion) -> str:
        """A text-only server said "stop" without saying which: the stop word's tokens, cut from the
        text, were generated (counted) but are not in the text; an end token is not counted at all."""
        if completion.generated_tokens is None:
            return "eos"
        cut = completion.generated_tokens - len(self.engine.tokenize(completion.text, special=False))
        stop_length = len(self.engine.tokenize(self.job.answer.stop, special=False))
        return "word" if cut >= max(1, stop_length - 1) else "eos"

    def _read_probe(self) -> None:
        """Where the generated text holds the probe, the choices' probabilities there (the last one counts),
        read with a request of its own: a text-only server generates without log-probabilities."""
        matches = list(completions.probe_matches(self.text, self.job.answer.probe))
        if matches:
            self._read_verdict("", upto=matches[-1])

    def _read_verdict(self, appendix: str, upto: int | None = None) -> None:
        """The choices' probabilities after the appendix: one more token, greedy, its top log-probabilities."""
        if upto is None:
            prompt = self._prompt(appendix)
        else:  # text-only: the generated text up to the probe
            prompt = self.engine.server_text(self.job.prompt.text) + self.text[:upto]
        completion = self._request(prompt, 1, None, Sampling())
        top = completion.positions[0].top if completion.positions else {}
        probabilities = self.engine.choice_probabilities(top, self.job.answer.choices)
        if probabilities is None:
            # None of the choices among the top log-probabilities (a model that is no judge): all of
            # them rank below the last one listed, and nothing tells them apart.
            self.unread = True
            choices = self.job.answer.choices
            probabilities = {choice: 1.0 / len(choices) for choice in choices}
        self.probabilities = probabilities
