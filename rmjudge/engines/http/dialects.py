"""What each OpenAI-compatible server offers, and how to ask it: recognised from its own endpoints.

| server             | recognised by                      | prompt sent as | chat template                          |
|--------------------|------------------------------------|----------------|----------------------------------------|
| llama.cpp's server | ``GET /props`` (``total_slots``)   | token ids      | ``/props`` chat_template, rendered here |
| SGLang             | ``GET /get_model_info``            | token ids      | applied by the server (``/tokenize``)   |
| vLLM               | ``GET /version``                   | token ids      | applied by the server (``/tokenize``)   |
| llama-cpp-python   | ``POST /extras/tokenize``, no /props | text only    | the GGUF's, read from the model file    |

Token ids are what keep the judged texts from ever becoming control tokens: rmjudge tokenizes them
with special-token parsing off, and the server evaluates exactly those ids. A server that takes
only text (llama-cpp-python's) tokenizes the whole prompt itself, special markup included.

Completions are read in both response shapes: OpenAI's legacy ``logprobs`` (``tokens``,
``top_logprobs: [{text: logprob}]``) and llama.cpp's (``[{id, token, logprob, top_logprobs}]``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmjudge.engines.base import Sampling
from rmjudge.engines.http.client import HttpStatusError, ServerAnswerError

TOP_LOGPROBS = 20  # per generated token: vLLM's default cap (--max-logprobs); a judge's choices are far inside it
# For the one verdict token after an appendix, where the server has no cap (llama.cpp's servers): a small
# model's choices may rank lower there, and one position's 100 entries cost nothing.
VERDICT_TOP_LOGPROBS = 100
# llama.cpp's built-in template, what llama-server reports for a GGUF without one of its own (rmjudge
# then formats plain text, as the in-process engine does for such a model).
LLAMA_CPP_CHATML_FALLBACK = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}"
)

Call = Callable[[str, str, Any], Any]  # (method, path, body) -> JSON, bound to one endpoint


@dataclass(frozen=True)
class ServerFacts:
    """What describing one endpoint found."""

    dialect: str  # "llama-server", "vllm", "sglang", "llama-cpp-python"
    model: str  # the served model id, named in every request
    source: str | None  # the file or repository the server reports it loaded
    version: str | None
    max_context: int  # tokens one request (prompt and generation) may take
    slots: int | None  # sequences the server decodes at once, where it says
    chat_template: str | None  # the model's template, rendered here (None: the server renders, or plain)
    server_renders: bool  # the chat template is applied by the server
    bos_token: str = ""
    eos_token: str = ""
    metadata: Mapping[str, object] = field(default_factory=dict, repr=False)  # the prompt-family hint
    local_gguf: Path | None = None  # llama-cpp-python: the model file, when it is on this machine
    bos_id: int | None = None  # llama-cpp-python: the BOS its tokenizer route adds where the vocabulary asks

    @property
    def takes_token_ids(self) -> bool:
        return self.dialect != "llama-cpp-python"


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


# -- recognising a server ------------------------------------------------------------------------


def _optional(call: Call, method: str, path: str, body: Any = None) -> Any:
    """The answer, or None where the server has no such route (a 4xx other than a refused key)."""
    try:
        return call(method, path, body)
    except HttpStatusError as error:
        if error.status in (401, 403):
            raise
        return None


def describe(call: Call, url: str) -> ServerFacts:
    """Recognise the server behind ``call`` and read its model, context and template."""
    props = _optional(call, "GET", "/props")
    if isinstance(props, dict) and ("total_slots" in props or "chat_template" in props):
        return _llama_server(call, props, url)
    info = _optional(call, "GET", "/get_model_info")
    if isinstance(info, dict) and "model_path" in info:
        return _openai_family(call, url, "sglang", source=str(info["model_path"]), version=_version(call))
    version = _version(call)
    if version is not None:
        return _openai_family(call, url, "vllm", source=None, version=version)
    if isinstance(_optional(call, "POST", "/extras/tokenize", {"input": "a"}), dict):
        return _llama_cpp_python(call, url)
    raise ServerAnswerError(
        f"{url} is not a server rmjudge knows (llama.cpp's llama-server, vLLM, SGLang, llama-cpp-python): "
        "none of /props, /get_model_info, /version, /extras/tokenize answered"
    )


def _version(call: Call) -> str | None:
    answer = _optional(call, "GET", "/version")
    return str(answer["version"]) if isinstance(answer, dict) and "version" in answer else None


def _models(call: Call, url: str) -> dict[str, Any]:
    answer = call("GET", "/v1/models", None)
    data = answer.get("data") if isinstance(answer, dict) else None
    if not data or not isinstance(data[0], dict) or "id" not in data[0]:
        raise ServerAnswerError(f"{url}/v1/models lists no model: is the model loaded?")
    return data[0]


def _llama_server(call: Call, props: dict[str, Any], url: str) -> ServerFacts:
    model = _models(call, url)
    settings = props.get("default_generation_settings") or {}
    slot_context = settings.get("n_ctx") if isinstance(settings, dict) else None
    meta = model.get("meta") or {}
    template = props.get("chat_template") or None
    if template == LLAMA_CPP_CHATML_FALLBACK:
        template = None  # the GGUF has none: llama-server falls back to ChatML, rmjudge to plain text
    source = props.get("model_path")
    return ServerFacts(
        dialect="llama-server",
        model=str(model["id"]),
        source=str(source) if source else None,
        version=str(props.get("build_info")) if props.get("build_info") else None,
        max_context=int(slot_context or meta.get("n_ctx_train") or 0) or _missing(url, "/props n_ctx"),
        slots=int(props["total_slots"]) if props.get("total_slots") else None,
        chat_template=template,
        server_renders=False,
        bos_token=str(props.get("bos_token") or ""),
        eos_token=str(props.get("eos_token") or ""),
        metadata=_hint(model["id"], source),
    )


def _openai_family(call: Call, url: str, dialect: str, *, source: str | None, version: str | None) -> ServerFacts:
    model = _models(call, url)
    context = model.get("max_model_len")
    if not context:
        tokenized = call("POST", "/tokenize", {"model": model["id"], "prompt": "a"})
        context = tokenized.get("max_model_len") if isinstance(tokenized, dict) else None
    source = source or model.get("root")
    return ServerFacts(
        dialect=dialect,
        model=str(model["id"]),
        source=str(source) if source else None,
        version=version,
        max_context=int(context or 0) or _missing(url, "max_model_len"),
        slots=None,
        chat_template=None,
        server_renders=True,
        metadata=_hint(model["id"], source),
    )


def _llama_cpp_python(call: Call, url: str) -> ServerFacts:
    from rmjudge import gguf

    model = _models(call, url)
    path = Path(str(model["id"]))  # its default model id is the path it was started with
    if not path.is_file():
        raise ServerAnswerError(
            f"{url} is llama-cpp-python's server, which does not tell its chat template: rmjudge reads it from "
            f"the model file, and {model['id']!r} is not a file here; start the server on this machine without "
            "--model_alias, or use llama.cpp's llama-server (it reports its template)"
        )
    metadata = gguf.read_metadata(path)
    bos_id, bos_text, eos_text = _special_tokens(path)
    return ServerFacts(
        dialect="llama-cpp-python",
        model=str(model["id"]),
        source=path.name,
        version=None,
        max_context=_llama_cpp_python_context(call, url, gguf.context_length(metadata) or 131072),
        slots=1,  # one request at a time: the server holds a global lock around the model
        chat_template=gguf.chat_template(metadata),
        server_renders=False,
        bos_token=bos_text,
        eos_token=eos_text,
        metadata=metadata,
        local_gguf=path,
        bos_id=bos_id,
    )


def _special_tokens(path: Path) -> tuple[int | None, str, str]:
    """The BOS id and the BOS and EOS texts of a GGUF, as the in-process engine reads them (vocabulary only)."""
    import llama_cpp
    from llama_cpp import _internals

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    bos, eos = model.token_bos(), model.token_eos()
    return (
        bos if bos != -1 else None,
        model.token_get_text(bos) if bos != -1 else "",
        model.token_get_text(eos) if eos != -1 else "",
    )


def _llama_cpp_python_context(call: Call, url: str, trained: int) -> int:
    """Its context size, which no route reports: a prompt longer than the model's trained context is
    refused before any evaluation, with the server's context size in the message."""
    try:
        call("POST", "/v1/completions", {"prompt": "a " * (trained + 8), "max_tokens": 1})
    except HttpStatusError as error:
        found = re.search(r"(?:context window of|maximum context length is) (\d+)", error.text)
        if found:
            return int(found.group(1))
    return _missing(url, "the context size")


def _missing(url: str, what: str) -> int:
    raise ServerAnswerError(f"{url} did not report {what}: is it an OpenAI-compatible server with a model loaded?")


def _hint(model: object, source: object) -> dict[str, object]:
    """The prompt-family hint for the judge: the served names stand where a GGUF's metadata would."""
    return {"general.name": str(model), "general.source.url": str(source or model)}


# -- tokens --------------------------------------------------------------------------------------


def tokenize(call: Call, facts: ServerFacts, text: str, *, special: bool, bos: bool = False) -> list[int]:
    """The server's tokens of ``text``; ``special``: control-token markup in it becomes control tokens."""
    if not text:
        return []
    if facts.dialect == "llama-server":
        answer = call("POST", "/tokenize", {"content": text, "add_special": bos, "parse_special": special})
        return _token_list(answer, facts)
    if facts.dialect == "llama-cpp-python":
        # Always as the completion route will: BOS added where the vocabulary asks, markup parsed.
        ids = _token_list(call("POST", "/extras/tokenize", {"input": text}), facts)
        return ids[1:] if not bos and ids[:1] == [facts.bos_id] else ids
    # vLLM and SGLang tokenize with Hugging Face tokenizers, which always turn a control token's
    # text into the control token: where one may be in the text, it is cut there and the parts
    # tokenized apart, so no part holds a whole control token.
    if not special:
        return [t for part in _split_controls(text, facts) for t in _hf_tokenize(call, facts, part, bos=False)]
    return _hf_tokenize(call, facts, text, bos=bos)


def _hf_tokenize(call: Call, facts: ServerFacts, text: str, *, bos: bool) -> list[int]:
    return _token_list(
        call("POST", "/tokenize", {"model": facts.model, "prompt": text, "add_special_tokens": bos}), facts
    )


_CONTROL = re.compile(r"<\|[^|<>\s]{1,40}\|>|<｜[^｜<>\s]{1,40}｜>|<(?:/?s|bos|eos|pad|unk|start_of_turn|end_of_turn)>")


def _split_controls(text: str, facts: ServerFacts) -> list[str]:
    """``text`` cut inside every piece that looks like control markup (ChatML, DeepSeek, Gemma, Llama, BOS/EOS)."""
    cuts: list[int] = []
    for match in _CONTROL.finditer(text):
        cuts.append(match.start() + 1)
    for token in (facts.bos_token, facts.eos_token):
        if token:
            cuts.extend(m.start() + 1 for m in re.finditer(re.escape(token), text))
    parts, start = [], 0
    for cut in sorted(set(cuts)):
        parts.append(text[start:cut])
        start = cut
    parts.append(text[start:])
    return [p for p in parts if p]


def _token_list(answer: Any, facts: ServerFacts) -> list[int]:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list):
        raise ServerAnswerError(f"the {facts.dialect} server's tokenizer answered without a token list")
    return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]


def render(call: Call, facts: ServerFacts, messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt text of ``messages`` in the server's own chat template, ready for the reply."""
    body = {"model": facts.model, "messages": [dict(m) for m in messages], "add_generation_prompt": True}
    ids = _token_list(call("POST", "/tokenize", body), facts)
    answer = call("POST", "/detokenize", {"model": facts.model, "tokens": ids})
    text = answer.get("prompt", answer.get("text")) if isinstance(answer, dict) else None
    if not isinstance(text, str):
        raise ServerAnswerError(f"the {facts.dialect} server's /detokenize answered without the text")
    return text


# -- completions ---------------------------------------------------------------------------------


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
    return Completion(
        text=text,
        token_ids=token_ids,
        positions=positions,
        finish=finish,
        model=str(answer["model"]) if answer.get("model") else None,
        evaluated_prompt_tokens=evaluated,
        generated_tokens=generated if isinstance(generated, int) else None,
    )


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
    return Completion(
        text=text,
        token_ids=token_ids,
        positions=positions,
        finish=finish,
        model=str(answer["model"]) if answer.get("model") else None,
        evaluated_prompt_tokens=int(timings["prompt_n"]) if isinstance(timings.get("prompt_n"), int) else None,
        prompt_seconds=float(timings.get("prompt_ms") or 0.0) / 1000.0,
    )


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
