"""The HTTP engine: the judge's jobs run on OpenAI-compatible servers, many requests in flight.

- Each job is one or more completion requests: the reasoning (continued where the server stopped
  on a ``</answer>`` that does not count), then, where the verdict was not read, a continuation
  with the appendix and one token, whose top log-probabilities give the choices.
- Up to ``concurrency`` requests per endpoint are in flight, each new one on the endpoint with the
  fewest, so every server's own continuous batching fills. Faults are retried elsewhere
  (``client.Endpoints``).
- The model's identity comes from the servers: the served model id, the file or repository they
  report, and a fingerprint (see ``identity``). Every endpoint must serve the same model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from rmjudge.chat import render_with_spans, safe_tokens
from rmjudge.engines import EngineOptions
from rmjudge.engines.base import EndpointFigures, EngineInfo, Job, Output, Prompt, Sampling
from rmjudge.engines.http import completions, dialects, tokenizer
from rmjudge.engines.http.client import Endpoint, Endpoints, HttpStatusError, RetryPolicy, ServerAnswerError
from rmjudge.engines.http.completions import Completion
from rmjudge.engines.http.dialects import ServerFacts
from rmjudge.engines.http.job import JobRun
from rmjudge.errors import UsageError

log = logging.getLogger("rmjudge.engines.http")

API_KEY_VARIABLE = "RMJUDGE_API_KEY"
# Requests in flight per endpoint when --concurrency is not given. llama-server: its slots (-np), as
# /props reports them; more would only queue there. llama-cpp-python's server runs one request at a
# time behind a lock. vLLM and SGLang batch continuously up to hundreds of sequences; 32 long
# reasoning traces keep a GPU's decode batch full without pushing the KV cache into preemption.
DEFAULT_CONCURRENCY = {"llama-cpp-python": 1, "vllm": 32, "sglang": 32}
FINGERPRINT_PROMPT = "Which of the two answers is better, A or B? The better answer is"
FINGERPRINT_TOP = 5
FINGERPRINT_TOLERANCE = 0.15  # log-probability difference endpoints of one model may show (hardware, kernels)
TEXT_ONLY_WARNING = (
    "{url} ({dialect}) takes prompts as text only and tokenizes them itself: control-token markup "
    "inside the judged texts (e.g. <|im_end|>) becomes real control tokens there. Use llama-server, "
    "vLLM or SGLang where the judged texts are not trusted."
)


def create(options: EngineOptions) -> HttpEngine:
    """The registry's entry point (``rmjudge.engines.http:create``)."""
    if not options.endpoints:
        raise UsageError("the http engine talks to servers: pass --endpoint URL (once per server)")
    return HttpEngine(
        options.endpoints,
        concurrency=options.concurrency,
        api_key=options.api_key or os.environ.get(API_KEY_VARIABLE) or None,
    )


class HttpEngine:
    """Judging jobs run on one or more OpenAI-compatible servers that serve the same model."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        concurrency: int | None = None,
        api_key: str | None = None,
        policy: RetryPolicy | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise UsageError(f"--concurrency {concurrency}: use 1 or more requests in flight per endpoint")
        if len(set(endpoints)) != len(endpoints):
            raise UsageError(
                "an --endpoint is given twice: name each server once (use --concurrency for more requests)"
            )
        self._concurrency = concurrency
        self._warn = warn or log.warning
        self._warned = False
        self._lock = threading.Lock()
        self._reference: tuple[Endpoint, ServerFacts, list[tuple[int | str, float]]] | None = None
        self._endpoints = Endpoints(endpoints, api_key=api_key, policy=policy or RetryPolicy(), prepare=self._prepare)
        # Every endpoint described now: the model's name, context and template are the judge's first
        # questions, and an endpoint serving another model must stop the run before any work.
        self._endpoints.prepare_all()
        facts = self.facts
        parallel = sum(e.concurrency for e in self._endpoints.all if e.ready) + sum(
            self._default_concurrency(facts) for e in self._endpoints.all if not e.ready
        )
        metadata = dict(facts.metadata)
        if facts.chat_template:
            metadata["tokenizer.chat_template"] = facts.chat_template
        self.info = EngineInfo(
            name=facts.model,
            metadata=metadata,
            chat_format="server" if facts.server_renders else ("gguf" if facts.chat_template else "plain"),
            max_context=facts.max_context,
            parallel=parallel,
            versions={"server": f"{facts.dialect} {facts.version or 'unknown'}", "httpx": httpx.__version__},
        )
        self._formatter: Any = None  # the model's chat template, made on first use
        self._choice_keys: dict[tuple[str, ...], list[int | str]] = {}
        self._adds_bos: bool | None = None

    def __repr__(self) -> str:
        return f"HttpEngine({self._endpoints.names()})"

    # -- endpoints -------------------------------------------------------------------------------

    @property
    def facts(self) -> ServerFacts:
        assert self._reference is not None
        return self._reference[1]

    def _default_concurrency(self, facts: ServerFacts) -> int:
        return self._concurrency or facts.slots or DEFAULT_CONCURRENCY.get(facts.dialect, 8)

    def _prepare(self, endpoint: Endpoint) -> None:
        """Recognise the server, fingerprint its model, and check it serves what the others do."""
        call = self._caller(endpoint)
        facts = dialects.describe(call, endpoint.url)
        path, body = completions.completion_request(
            facts, FINGERPRINT_PROMPT, max_tokens=1, stop=None, sampling=Sampling(), verdict=True
        )
        completion = completions.parse_completion(call("POST", path, body), facts, None, endpoint.url, verdict=True)
        if not completion.positions:
            raise ServerAnswerError(f"{endpoint.url} generated nothing for a one-token probe: is the model loaded?")
        top = sorted(completion.positions[0].top.items(), key=lambda item: -item[1])[:FINGERPRINT_TOP]
        with self._lock:
            if self._reference is None:
                self._reference = (endpoint, facts, top)
            else:
                _check_same_model(self._reference, endpoint, facts, top)
        endpoint.facts = facts
        endpoint.concurrency = self._default_concurrency(facts)

    def _caller(self, endpoint: Endpoint) -> dialects.Call:
        def call(method: str, path: str, body: Any) -> Any:
            return self._endpoints.call(endpoint, method, path, body)

        return call

    def _on_any(self, operation: Callable[[dialects.Call], Any], stopped: Callable[[], bool] = lambda: False) -> Any:
        """``operation(call)`` on the least busy endpoint, retried elsewhere on faults."""
        return self._endpoints.use(lambda endpoint: operation(self._caller(endpoint)), stopped=stopped)[1]

    def endpoint_figures(self) -> list[EndpointFigures]:
        """Per endpoint: requests answered, tokens generated, in flight, set aside (progress and summaries)."""
        now = time.monotonic()
        return [
            EndpointFigures(e.url, e.completed, e.generated, e.in_flight, e.set_aside_until > now, e.last_error)
            for e in self._endpoints.all
        ]

    def close(self) -> None:
        self._endpoints.close()

    # -- identity and formatting -------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """The model as the servers describe it. Its ``id`` (the verdict cache key's model part) holds the
        served model id, the file or repository reported, and a fingerprint: the top next tokens and
        their log-probabilities (rounded to 0.1) after a fixed probe prompt, so two models served under
        one name never share cache entries. Endpoints of one run must agree on all of it."""
        assert self._reference is not None
        _, facts, top = self._reference
        fingerprint = hashlib.sha256(json.dumps([[key, round(value, 1)] for key, value in top]).encode()).hexdigest()[
            :16
        ]
        return {
            "id": f"{facts.dialect}:{facts.model}@{facts.source or '-'}#{fingerprint}",
            # What --flat and the summaries show as the model, as the in-process engine's file name.
            "file": (facts.source or facts.model).rstrip("/").rsplit("/", 1)[-1],
            "server": facts.dialect,
            "served_model": facts.model,
            "source": facts.source,
            "fingerprint": fingerprint,
        }

    def format_prompt(self, messages: Sequence[Mapping[str, str]]) -> Prompt:
        facts = self.facts
        if not facts.server_renders and not facts.chat_template:
            # No chat template (a base model): plain text, messages separated by blank lines, BOS as the
            # vocabulary asks: exactly what the in-process engine does.
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
            return Prompt(text=text, tokens=tuple(self.tokenize(text, special=False, bos=True)))
        render = self._render
        if not facts.takes_token_ids:  # the server tokenizes the text itself: these are the ids it will use
            text = render([dict(m) for m in messages])
            return Prompt(text=text, tokens=tuple(self.tokenize(self.server_text(text), special=True, bos=True)))
        # The template's markup is parsed into control tokens, the judged texts never are (as in-process).
        text, spans = render_with_spans(render, messages)
        tokens = safe_tokens(text, spans, lambda part, special: self.tokenize(part, special=special))
        return Prompt(text=text, tokens=tuple(tokens))

    def _render(self, messages: list[dict[str, str]]) -> str:
        """The chat template applied to ``messages``: by the server, or here with the model's own template."""
        facts = self.facts
        if facts.server_renders:
            return str(self._on_any(lambda call: tokenizer.render(call, facts, messages)))
        self._formatter = self._formatter or _formatter(facts)
        return str(self._formatter(messages=messages).prompt)

    def tokenize(self, text: str, *, special: bool, bos: bool = False) -> list[int]:
        facts = self.facts
        return list(self._on_any(lambda call: tokenizer.tokenize(call, facts, text, special=special, bos=bos)))

    def server_text(self, text: str) -> str:
        """A text prompt as a text-only server must get it: it adds BOS itself where the vocabulary asks."""
        facts = self.facts
        if facts.bos_token and text.startswith(facts.bos_token) and self._server_adds_bos():
            return text[len(facts.bos_token) :]
        return text

    def _server_adds_bos(self) -> bool:
        if self._adds_bos is None:
            self._adds_bos = self.tokenize(" ", special=True, bos=True)[:1] != self.tokenize(" ", special=True)[:1]
        return self._adds_bos

    def _choices(self, choices: tuple[str, ...], by_id: bool) -> list[int | str]:
        """How a position's top log-probabilities name each choice: its token id, or its text."""
        if not by_id:
            return list(choices)
        if choices not in self._choice_keys:
            self._choice_keys[choices] = [self.tokenize(c, special=True)[0] for c in choices]
        return self._choice_keys[choices]

    def choice_probabilities(self, top: Mapping[int | str, float], choices: tuple[str, ...]) -> dict[str, float] | None:
        by_id = bool(top) and isinstance(next(iter(top)), int)
        return completions.choice_probabilities(top, self._choices(choices, by_id), choices)

    # -- running jobs ----------------------------------------------------------------------------

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Output]]:
        """Every job on the endpoints, ``parallel`` at once; outputs as each finishes."""
        if not jobs:
            return
        if not self.facts.takes_token_ids and not self._warned:
            self._warned = True
            self._warn(
                TEXT_ONLY_WARNING.format(
                    url=self._reference[0].url if self._reference else "", dialect=self.facts.dialect
                )
            )
        pending: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(jobs)):
            pending.put(index)
        results: queue.SimpleQueue[tuple[int, Output | None, BaseException | None]] = queue.SimpleQueue()
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    index = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((index, self._run_job(jobs[index], stop.is_set), None))
                except BaseException as error:  # handed to the caller's thread, which raises it
                    results.put((index, None, error))

        # Daemon threads: a run abandoned mid-request (Ctrl-C) never holds the process open.
        workers = [
            threading.Thread(target=work, daemon=True, name="rmjudge-http")
            for _ in range(min(self.info.parallel, len(jobs)))
        ]
        for worker in workers:
            worker.start()
        try:
            for _ in range(len(jobs)):
                index, output, error = _next(results)
                if error is not None:
                    raise error
                assert output is not None
                yield index, output
        finally:
            stop.set()

    def _run_job(self, job: Job, stopped: Callable[[], bool]) -> Output:
        return JobRun(self, job, stopped).run()

    def complete(
        self,
        prompt: Sequence[int] | str,
        max_tokens: int,
        stop: str | None,
        sampling: Sampling,
        prefer: Endpoint | None,
        stopped: Callable[[], bool],
    ) -> tuple[Endpoint, Completion]:
        facts = self.facts
        verdict = stop is None

        def operation(endpoint: Endpoint) -> Completion:
            path, body = completions.completion_request(
                facts, prompt, max_tokens=max_tokens, stop=stop, sampling=sampling, verdict=verdict
            )
            try:
                answer = self._endpoints.call(endpoint, "POST", path, body)
            except HttpStatusError as error:
                if "logprob" in error.text.lower():
                    raise ServerAnswerError(f"{error}: {completions.logprobs_hint(facts)}") from None
                raise
            completion = completions.parse_completion(answer, facts, stop, endpoint.url, verdict=verdict)
            served = endpoint.facts.model if endpoint.facts else facts.model
            if completion.model and facts.dialect != "llama-server" and completion.model != served:
                raise ServerAnswerError(
                    f"{endpoint.url} answered with model {completion.model!r}, not {served!r}: "
                    "was the server restarted with another model? Restart the run to judge with it"
                )
            self._endpoints.count_generated(endpoint, completions.generated_count(completion))
            return completion

        return self._endpoints.use(operation, prefer=prefer, stopped=stopped)


def _next(
    results: queue.SimpleQueue[tuple[int, Output | None, BaseException | None]],
) -> tuple[int, Output | None, BaseException | None]:
    while True:  # short waits: Ctrl-C reaches the caller's thread at once
        try:
            return results.get(timeout=0.2)
        except queue.Empty:
            continue


def _formatter(facts: ServerFacts) -> Any:
    """The model's own chat template, rendered here exactly as the in-process engine renders it."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    assert facts.chat_template is not None
    return Jinja2ChatFormatter(
        template=facts.chat_template, eos_token=facts.eos_token, bos_token=facts.bos_token, add_generation_prompt=True
    )


def _check_same_model(
    reference: tuple[Endpoint, ServerFacts, list[tuple[int | str, float]]],
    endpoint: Endpoint,
    facts: ServerFacts,
    top: list[tuple[int | str, float]],
) -> None:
    """Every endpoint of a run must serve the same model: same server kind, id, source and fingerprint."""
    first, known, known_top = reference
    if (facts.dialect, facts.model, facts.source) != (known.dialect, known.model, known.source):
        raise ServerAnswerError(
            f"{endpoint.url} serves {facts.model!r} ({facts.dialect}, {facts.source or 'no source reported'}) but "
            f"{first.url} serves {known.model!r} ({known.dialect}, {known.source or 'no source reported'}): "
            "every --endpoint of one run must serve the same model"
        )
    theirs = dict(top)
    shared = [key for key, _ in known_top if key in theirs]
    close = all(abs(theirs[key] - value) <= FINGERPRINT_TOLERANCE for key, value in known_top if key in theirs)
    if not known_top or not top or known_top[0][0] != top[0][0] or len(shared) < min(3, len(known_top)) or not close:
        raise ServerAnswerError(
            f"{endpoint.url} and {first.url} both serve {facts.model!r}, but their next-token probabilities after "
            "the same probe differ: they are different weights under one name; serve one model on every --endpoint"
        )
