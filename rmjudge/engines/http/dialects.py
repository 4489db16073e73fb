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

Here: recognising a server (``describe``). Its tokenizer and template: ``tokenizer``; completion
requests and answers: ``completions``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmjudge.engines.http.client import HttpStatusError, ServerAnswerError

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
