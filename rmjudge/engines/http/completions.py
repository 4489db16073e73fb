"""Completions on every server: the request (with the top log-probabilities at each generated token),
the answer read in both response shapes (OpenAI's legacy ``logprobs``: ``tokens``, ``top_logprobs:
[{text: logprob}]``; llama.cpp's: ``[{id, token, logprob, top_logprobs}]``), and the verdict's
probabilities read from one position's top log-probabilities."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rmjudge.engines.base import Sampling
from rmjudge.engines.http.client import ServerAnswerError
from rmjudge.engines.http.dialects import ServerFacts

TOP_LOGPROBS = 20  # per generated token: vLLM's default cap (--max-logprobs); a judge's choices are far inside it
# For the one verdict token after an appendix, where the server has no cap (llama.cpp's servers): a small
# model's choices may rank lower there, and one position's 100 entries cost nothing.
VERDICT_TOP_LOGPROBS = 100


@dataclass(frozen=True)
class Position:
    """One generated token: its text and the top log-probabilities at its place (by id or by text)."""

    text: str
    top: Mapping[int | str, float]


@dataclass(frozen=True)
class Completion:
    text: str  # without the stop word
    token_ids: list[int] | None  # without an end-of-generation token; None: the server does not say
    positions: list[Position]
    finish: str  # "word" (the stop word), "eos", "length", or "stop" (one of the first two, not told apart)
    model: str | None
    evaluated_prompt_tokens: int | None = None
    prompt_seconds: float = 0.0
    generated_tokens: int | None = None  # as the server counts them (usage.completion_tokens)


def completion_request(
    facts: ServerFacts,
    prompt: Sequence[int] | str,
    *,
    max_tokens: int,
    stop: str | None,
    sampling: Sampling,
    verdict: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The route and body of one completion with the top log-probabilities at every generated token
    (``verdict``: one token whose log-probabilities are all that is wanted)."""
    prompt_value: list[int] | str = prompt if isinstance(prompt, str) else list(prompt)
    top = VERDICT_TOP_LOGPROBS if verdict and facts.dialect in ("llama-server", "llama-cpp-python") else TOP_LOGPROBS
    stops = [stop] if stop else []
    if facts.dialect == "llama-server":
        # The native route: it says why generation stopped and returns the generated token ids.
        return "/completion", {
            "prompt": prompt_value,
            "n_predict": max_tokens,
            "stop": stops,
            "n_probs": top,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "seed": sampling.seed,
            "return_tokens": True,
            "cache_prompt": True,
        }
    body: dict[str, Any] = {
        "model": facts.model,
        "prompt": prompt_value,
        "max_tokens": max_tokens,
        "stop": stops,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
    }
    if wants_logprobs(facts, verdict):
        body["logprobs"] = top
    if facts.dialect == "llama-cpp-python":
        # Its request defaults sample (top_k 40, min_p 0.05, repeat_penalty 1.1): switch them off.
        body.update(top_k=0, min_p=0.0, repeat_penalty=1.0)
    else:
        body.update(include_stop_str_in_output=True, return_token_ids=True)
    return "/v1/completions", body


def wants_logprobs(facts: ServerFacts, verdict: bool) -> bool:
    """Whether a request asks for log-probabilities at every generated token.

    llama-cpp-python's server turns the logits of every position into log-probabilities and sorts the
    whole vocabulary per token, in Python: seconds per token for a large vocabulary. It generates
    without them; the verdict position is read with a request of its own.
    """
    return verdict or facts.dialect != "llama-cpp-python"


def parse_completion(
    answer: Any, facts: ServerFacts, stop: str | None, url: str, *, verdict: bool = False
) -> Completion:
    """A completion answer in any of the shapes, or one line saying what is missing and what to change."""
    if not isinstance(answer, dict):
        raise ServerAnswerError(f"{url} answered a completion with {type(answer).__name__}, not an object")
    if "completion_probabilities" in answer or "stop_type" in answer:
        return _parse_native(answer, facts, url)
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ServerAnswerError(f"{url} answered a completion without choices")
    choice = choices[0]
    text = choice.get("text")
    if not isinstance(text, str):
        raise ServerAnswerError(f"{url} answered a completion without its text")
    logprobs = choice.get("logprobs")
    positions: list[Position] = []
    if wants_logprobs(facts, verdict):
        if not isinstance(logprobs, dict):
            raise ServerAnswerError(f"{url} answered without log-probabilities: {logprobs_hint(facts)}")
        chat_shape = "content" in logprobs
        positions = _chat_positions(logprobs["content"], url) if chat_shape else _legacy_positions(logprobs, url)
    ids = choice.get("token_ids")
    token_ids = [int(t) for t in ids] if isinstance(ids, list) else None
    finish = _finish(choice.get("finish_reason"), text, positions, stop)
    if finish == "eos" and not positions and choice.get("finish_reason") == "stop":
        finish = "stop"  # without log-probabilities: the stop word or an end token, the engine tells which
    if finish == "word" and stop and text.endswith(stop):
        text = text[: -len(stop)]
    if finish == "eos" and facts.dialect != "llama-cpp-python" and token_ids and len(token_ids) == len(positions):
        token_ids = token_ids[:-1]  # the end-of-generation token is counted and listed, rmjudge keeps it out
    usage: dict[str, Any] = answer["usage"] if isinstance(answer.get("usage"), dict) else {}
    generated = usage.get("completion_tokens")
    evaluated = None
    if isinstance(usage.get("prompt_tokens"), int):
        details = usage.get("prompt_tokens_details") or {}
        evaluated = usage["prompt_tokens"] - int((details or {}).get("cached_tokens") or 0)
    generated_tokens = generated if isinstance(generated, int) else None
    return _completion(answer, text, token_ids, positions, finish, evaluated=evaluated, generated=generated_tokens)


def _parse_native(answer: dict[str, Any], facts: ServerFacts, url: str) -> Completion:
    entries = answer.get("completion_probabilities")
    if not isinstance(entries, list):
        raise ServerAnswerError(f"{url} answered without log-probabilities: {logprobs_hint(facts)}")
    positions = _chat_positions(entries, url)
    finish = {"word": "word", "eos": "eos", "limit": "length"}.get(str(answer.get("stop_type")), "length")
    ids = answer.get("tokens")
    token_ids = [int(t) for t in ids] if isinstance(ids, list) and ids else None
    if token_ids and finish == "eos":
        token_ids = token_ids[:-1]
    timings: dict[str, Any] = answer["timings"] if isinstance(answer.get("timings"), dict) else {}
    text = answer.get("content")
    if not isinstance(text, str):
        raise ServerAnswerError(f"{url} answered a completion without its content")
    evaluated = int(timings["prompt_n"]) if isinstance(timings.get("prompt_n"), int) else None
    prompt_seconds = float(timings.get("prompt_ms") or 0.0) / 1000.0
    return _completion(answer, text, token_ids, positions, finish, evaluated=evaluated, prompt_seconds=prompt_seconds)


def _completion(
    answer: dict[str, Any],
    text: str,
    token_ids: list[int] | None,
    positions: list[Position],
    finish: str,
    *,
    evaluated: int | None,
    generated: int | None = None,
    prompt_seconds: float = 0.0,
) -> Completion:
    """A completion as either response shape gives it; the served model is read the same way from both."""
    return Completion(
        text=text,
        token_ids=token_ids,
        positions=positions,
        finish=finish,
        model=str(answer["model"]) if answer.get("model") else None,
        evaluated_prompt_tokens=evaluated,
        prompt_seconds=prompt_seconds,
        generated_tokens=generated,
    )


def generated_count(completion: Completion) -> int:
    """Tokens a completion generated: as the server counted them, else the ids or positions it returned."""
    if completion.generated_tokens is not None:
        return completion.generated_tokens
    return len(completion.token_ids) if completion.token_ids is not None else len(completion.positions)


def _chat_positions(entries: Any, url: str) -> list[Position]:
    """llama.cpp's shape: ``[{id, token, logprob, top_logprobs: [{id, token, logprob}]}]``."""
    if not isinstance(entries, list):
        raise ServerAnswerError(f"{url} answered log-probabilities in a shape rmjudge does not know")
    positions = []
    for entry in entries:
        top = entry.get("top_logprobs") if isinstance(entry, dict) else None
        if not isinstance(top, list):
            raise ServerAnswerError(f"{url} answered a token without its top log-probabilities")
        positions.append(
            Position(
                text=str(entry.get("token", "")),
                top={(int(t["id"]) if "id" in t else str(t["token"])): float(t["logprob"]) for t in top},
            )
        )
    return positions


def _legacy_positions(logprobs: dict[str, Any], url: str) -> list[Position]:
    """OpenAI's legacy shape: ``{tokens: [text], top_logprobs: [{text: logprob}]}``."""
    tokens, top = logprobs.get("tokens"), logprobs.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(top, list) or len(tokens) != len(top):
        raise ServerAnswerError(f"{url} answered log-probabilities without tokens or top_logprobs")
    return [
        Position(text=str(token), top={str(k): float(v) for k, v in (entry or {}).items()})
        for token, entry in zip(tokens, top)
    ]


def _finish(reason: object, text: str, positions: list[Position], stop: str | None) -> str:
    if reason == "length":
        return "length"
    if stop and (text.endswith(stop) or stop in "".join(p.text for p in positions)[len(text) :]):
        return "word"  # vLLM keeps the stop word in the text (asked to); llama-cpp-python lists its tokens
    return "eos"


def logprobs_hint(facts: ServerFacts) -> str:
    return {
        "vllm": "start vLLM with --max-logprobs 20 or more",
        "sglang": "SGLang must return logprobs for /v1/completions",
        "llama-cpp-python": "start llama-cpp-python's server with --logits_all true (its default)",
    }.get(facts.dialect, "the server must return n_probs / logprobs")


# -- reading the verdict -------------------------------------------------------------------------


def choice_probabilities(
    top: Mapping[int | str, float], keys: Sequence[int | str], choices: Sequence[str]
) -> dict[str, float] | None:
    """P(choice), normalised over the choices, from one position's top log-probabilities.

    ``keys`` names each choice as ``top`` does (token ids, or texts). A choice outside the top
    log-probabilities counts as 0; None when none of them is there.
    """
    present = {choice: top[key] for choice, key in zip(choices, keys) if key in top}
    if not present:
        return None
    peak = max(present.values())
    weights = {choice: math.exp(present.get(choice, -math.inf) - peak) for choice in choices}
    total = sum(weights.values())
    return {choice: weight / total for choice, weight in weights.items()}


_PROBE_PATTERNS: dict[str, re.Pattern[str]] = {}


def probe_matches(text: str, probe: str) -> Iterator[int]:
    """Where in ``text`` a ``probe`` ends (whitespace allowed before each ``[``): where the choices are read."""
    pattern = re.compile(re.escape(probe).replace(r"\[", r"\s*\["))
    for match in pattern.finditer(text):
        yield match.end()


def ends_with_probe(text: str, probe: str) -> bool:
    """Whether ``text`` ends with ``probe``, whitespace allowed before each ``[`` and at the end (as in-process)."""
    pattern = _PROBE_PATTERNS.get(probe)
    if pattern is None:
        pattern = re.compile(re.escape(probe).replace(r"\[", r"\s*\[") + r"\s*$")
        _PROBE_PATTERNS[probe] = pattern
    return pattern.search(text[-(len(probe) + 8) :]) is not None
